"""Run the accounting service: `python -m accounting_service` (PORT, KAFKA_BOOTSTRAP_SERVERS, ... from env)."""

from accounting_service.app import NAME, AccountingSettings, create_app
from eventkit.logs import configure
from eventkit.service import serve


def main() -> None:
    settings = AccountingSettings()
    configure(NAME, settings.log_level)
    serve(create_app(settings), settings.host, settings.port)


if __name__ == "__main__":
    main()
