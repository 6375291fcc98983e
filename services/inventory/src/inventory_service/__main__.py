"""Run the inventory service: `python -m inventory_service` (PORT, KAFKA_BOOTSTRAP_SERVERS, ... from env)."""

from eventkit.logs import configure
from eventkit.service import serve
from inventory_service.app import NAME, InventorySettings, create_app


def main() -> None:
    settings = InventorySettings()
    configure(NAME, settings.log_level)
    serve(create_app(settings), settings.host, settings.port)


if __name__ == "__main__":
    main()
