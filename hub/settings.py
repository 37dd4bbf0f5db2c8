"""The hub's one settings module. Everything configurable comes from the environment.

See README.md, "Configuration", for the table of variables. Bad values stop the process at
start-up with a message naming the variable (hub.env); nothing here is changed at runtime.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from hub.env import (
    env_bool,
    env_int,
    env_list,
    env_rate,
    env_str,
    read_or_create_fernet_key,
    read_or_create_secret,
)
from hub.keys import load_signing_keys

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("HUB_VAR_DIR", str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = env_str("SECRET_KEY") or read_or_create_secret(VAR_DIR / "secret_key")
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "guardian",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_results",
    "django_celery_beat",
    "hub",
    "sites",
    "workflows",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "hub.urls"
WSGI_APPLICATION = "hub.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
_database_url = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'hub.sqlite3'}")
try:
    _database = dj_database_url.parse(_database_url, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0))
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL={_database_url!r} is not a database URL: {exc}") from None
if _database["ENGINE"] not in ("django.db.backends.sqlite3", "django.db.backends.postgresql"):
    raise ImproperlyConfigured("DATABASE_URL must be a postgres:// or sqlite:/// URL")
# Every request is one transaction: a write that fails half-way leaves nothing behind.
_database["ATOMIC_REQUESTS"] = True
if _database["ENGINE"] == "django.db.backends.sqlite3":
    # Wait for the writer lock instead of failing at once when the hub's processes overlap.
    _database.setdefault("OPTIONS", {})["timeout"] = 30
    _database["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
DATABASES = {"default": _database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache (throttling) ---------------------------------------------------------------------
_cache_url = env_str("CACHE_URL")
if _cache_url is None:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
elif _cache_url.startswith(("redis://", "rediss://")):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _cache_url}}
else:
    raise ImproperlyConfigured(f"CACHE_URL={_cache_url!r} must be a redis:// URL (or unset for in-process)")

# --- Authentication -------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
# Guardian's "anonymous user" row is not wanted: anonymous callers get 401 everywhere.
ANONYMOUS_USER_NAME = None
GUARDIAN_MONKEY_PATCH_USER = False
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
]

JWT_PRIVATE_KEY, JWT_PUBLIC_KEY = load_signing_keys(VAR_DIR)
SIMPLE_JWT = {
    "ALGORITHM": "RS256",
    "SIGNING_KEY": JWT_PRIVATE_KEY,
    "VERIFYING_KEY": JWT_PUBLIC_KEY,
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=env_int("JWT_ACCESS_LIFETIME", 3600, minimum=60)),
    "REFRESH_TOKEN_LIFETIME": timedelta(seconds=env_int("JWT_REFRESH_LIFETIME", 86400, minimum=60)),
    "AUTH_HEADER_TYPES": ("Bearer",),
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "user_id",
    "UPDATE_LAST_LOGIN": True,
}

# --- REST framework -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        "hub.authentication.ClientKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "hub.api.pagination.HubPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "hub.api.exceptions.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": [
        "hub.api.throttling.AnonThrottle",
        "hub.api.throttling.UserThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env_rate("THROTTLE_ANON", "120/min"),
        "user": env_rate("THROTTLE_USER", "6000/min"),
        "auth": env_rate("THROTTLE_AUTH", "30/min"),
    },
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Hybrid-storage hub API",
    "DESCRIPTION": "Sites, spaces, buckets, workflows and jobs of a hybrid-storage estate.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Several serializers have a field called ``type``; name each enum so they do not collide.
    "ENUM_NAME_OVERRIDES": {
        "TokenTypeEnum": ["access", "refresh"],
        "JobStateEnum": "workflows.states.JobState",
        "TaskStateEnum": "workflows.states.TaskState",
        "PathStateEnum": "workflows.states.PathState",
        "SettingsTaskStateEnum": "sites.models.tasks.SettingsTask.State",
    },
}

# --- Celery ---------------------------------------------------------------------------------
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env_str("BROKER_URL", "filesystem://")
if not CELERY_BROKER_URL.startswith(("filesystem://", "redis://", "rediss://", "amqp://", "amqps://")):
    raise ImproperlyConfigured(f"BROKER_URL={CELERY_BROKER_URL!r}: use filesystem://, redis:// or amqp://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    for _sub in ("queue", "processed", "control"):
        (BROKER_DIR / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
    # Publishes a message file whole or not at all (kombu's own writes it in place; a reader
    # could take it half-written). Shared with the agent: agent/transport.py.
    CELERY_BROKER_TRANSPORT = "agent.transport:AtomicFilesystemTransport"
else:
    # Long data-movement tasks are acknowledged late; a visibility timeout shorter than the
    # longest task would make Redis hand the same task to a second worker while it still runs.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env_int("BROKER_VISIBILITY_TIMEOUT", 12 * 3600, minimum=60),
    }
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", "django-db")
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "hub"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# The workflow sweeper (workflows.sweeper): stuck tasks, lost nodes, waiting queues, old jobs.
CELERY_BEAT_SCHEDULE = {
    "workflow-sweeper": {"task": "hub.workflows.sweep", "schedule": env_int("HUB_SWEEP_INTERVAL", 30, minimum=1),
                         "options": {"queue": "hub", "expires": 60}},
}
CELERY_TIMEZONE = "UTC"

# --- Internationalisation, static files, logging --------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)

HUB_ADMINISTRATORS_GROUP = "Administrators"
HUB_USERS_GROUP = "Users"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

# Keys for secrets stored in the database (bucket credentials). The first key encrypts; every
# key decrypts, so a key is rotated by putting a new one first. Fernet keys: 32 url-safe base64
# bytes. Without the variable a key is generated once into var/.
HUB_FIELD_ENCRYPTION_KEYS = env_list("HUB_FIELD_ENCRYPTION_KEYS", []) or [
    read_or_create_fernet_key(VAR_DIR / "field_encryption.key")
]

# Trust X-Forwarded-For for the audit trail's client address (only behind a proxy that sets it).
HUB_TRUST_X_FORWARDED_FOR = env_bool("HUB_TRUST_X_FORWARDED_FOR", False)

# make run's demo estate (site "demo", its space, a folder target) and the demo site's agent
# (manage.py ensure_demo, runhub). 0 turns both off.
HUB_DEMO = env_bool("HUB_DEMO", True)
