"""Run the shipping service: `python -m shipping_service` (PORT, KAFKA_BOOTSTRAP_SERVERS, ... from env)."""

from eventkit.logs import configure
from eventkit.service import serve
from shipping_service.app import NAME, ShippingSettings, create_app


def main() -> None:
    settings = ShippingSettings()
    configure(NAME, settings.log_level)
    serve(create_app(settings), settings.host, settings.port)


if __name__ == "__main__":
    main()
