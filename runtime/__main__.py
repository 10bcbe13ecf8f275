"""Entry point: `python3 -m runtime`. Exit code 2 means the configuration is unusable."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from runtime.config import ConfigError, load_env, load_settings, with_secrets_file
from runtime.logs import add_file_handler, setup_logging
from runtime.seed import apply_seed

EXIT_CONFIG = 2


def main() -> int:
    """Load and check the configuration, then run the runtime until it is told to stop."""

    def waiting() -> None:  # the health sweep's cue: delivered secrets are still missing
        print("tinyagi runtime: waiting for secrets", file=sys.stderr, flush=True)

    try:
        environ = with_secrets_file(dict(os.environ), on_wait=waiting)
    except ConfigError as exc:
        print(f"tinyagi runtime: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    ring, redactor = setup_logging(environ, environ.get("TINYAGI_LOG_LEVEL", "INFO"))
    log = logging.getLogger("runtime")
    try:
        env = load_env(environ)
        os.makedirs(env.home, exist_ok=True)
        apply_seed(env.home, environ.get("TINYAGI_SEED_FILE"))
        add_file_handler(os.path.join(env.home, "logs"))
        settings = load_settings(env.home, env)
    except (ConfigError, OSError) as exc:
        if isinstance(exc, ConfigError):
            message = str(exc)
        else:
            message = f"home: not writable ({exc.strerror})"
        log.error("refusing to start", extra={"error": message})
        print(f"tinyagi runtime: {redactor(message)}", file=sys.stderr)
        return EXIT_CONFIG
    if settings.file_telegram_token:
        redactor.add(settings.file_telegram_token)
    from runtime.app import App  # imported late so a config error exits before the heavy imports

    asyncio.run(App(env, settings, ring).run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
