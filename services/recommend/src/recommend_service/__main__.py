"""Run the recommend read API: `python -m recommend_service` (PORT 8004, RECOMMEND_MAX_AGE, ... from env).

The Faust stream app that fills the cache runs separately: `python -m recommend_service.worker`.
"""

from eventkit.logs import configure
from eventkit.service import serve
from recommend_service.api import NAME, create_app
from recommend_service.settings import ApiSettings


def main() -> None:
    settings = ApiSettings()
    configure(NAME, settings.log_level)
    serve(create_app(settings), settings.host, settings.port)


if __name__ == "__main__":
    main()
