#!/usr/bin/env bash
# A venv that holds taskq beside a few dozen popular packages (and their entry points, .pth files and
# a large site-packages), for the cold-start figure of bench/run.py in a "fat" environment: issue 21
# asks that `taskq enqueue` start as fast there as in a lean venv (entry-point scanning and the size of
# site-packages must not show). bench/run.py uses it when bench/results/fatvenv exists.
#   bash bench/make_fatvenv.sh [DIR]        # default bench/results/fatvenv; a few minutes
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:-$root/bench/results/fatvenv}"
python3.11 -m venv "$dir"
"$dir/bin/pip" install -q "$root" rq
"$dir/bin/pip" install -q \
  numpy pandas requests boto3 django flask sqlalchemy alembic \
  pytest pytest-cov pytest-xdist pytest-mock pytest-asyncio pytest-timeout pytest-randomly hypothesis \
  fastapi uvicorn httpx aiohttp pyyaml jinja2 click rich attrs \
  black isort flake8 pylint sphinx mkdocs \
  celery gunicorn psycopg2-binary pymongo python-dateutil pytz tqdm pillow cryptography
"$dir/bin/python" -c "import importlib.metadata as m; d=list(m.distributions()); \
print(f'{len(d)} distributions, {sum(len(x.entry_points) for x in d)} entry points')"
