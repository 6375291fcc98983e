"""Run the order API: `python -m order_service` (PORT, KAFKA_BOOTSTRAP_SERVERS, ... from env)."""

from eventkit.logs import configure
from eventkit.service import serve
from order_service.app import NAME, OrderSettings, create_app


def main() -> None:
    settings = OrderSettings()
    configure(NAME, settings.log_level)
    serve(create_app(settings), settings.host, settings.port)


if __name__ == "__main__":
    main()
