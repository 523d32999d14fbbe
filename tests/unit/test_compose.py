"""docker-compose.yaml: the system of ``make stack`` plus a real Airflow, checked without a Docker engine.

The suite runs where no Docker engine (and no compose plugin) exists, so the compose file is kept
honest statically:

- it validates against the Compose Specification's JSON schema, vendored as
  ``docker/compose-spec.json``: a copy of the team's ``shared/compose/compose-spec.json``, which is
  ``schema/compose-spec.json`` of https://github.com/compose-spec/compose-spec (draft-07, as its
  ``$schema`` says);
- every path it names exists, the image is the Airflow release the project pins, and the Airflow
  processes get the variables and connections that ``devstack.stack.stack_environment()`` gives
  ``make stack``, pointing at the same databases, roles and passwords the postgres service creates;
- the postgres init script really runs, on the PostgreSQL 16 binaries of the pgserver wheel;
- where a docker CLI with the compose plugin exists, ``docker compose config -q`` checks the file too.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import unquote, urlsplit

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yaml"
SCHEMA_FILE = REPO / "docker" / "compose-spec.json"
INIT_SCRIPT = REPO / "docker" / "postgres-init" / "10-create-databases.sh"

AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
# The container paths that replace the checkout's: stack_environment() names the repository's
# folders, the containers the mount targets. Same variables, values different by design.
CONTAINER_PATH_VARIABLES = {
    "AIRFLOW_HOME": None,  # the image's home; nothing mounted there
    "AIRFLOW__CORE__DAGS_FOLDER": "dags",
    "AIRFLOW__CORE__PLUGINS_FOLDER": "plugins",
    "ETL_INCLUDE_DIR": "include",
}


# -- reading the files ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    # safe_load resolves the x-* anchors and `<<` merges, as compose does.
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def dockerfile_of(service: dict) -> Path:
    build = service["build"]
    if isinstance(build, str):
        return REPO / build / "Dockerfile"
    return REPO / build.get("context", ".") / build.get("dockerfile", "Dockerfile")


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def command(service: dict) -> list[str]:
    cmd = service.get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(part) for part in cmd]


def bind_mounts(service: dict) -> dict[str, str]:
    """Container target -> host path (relative to the repository) of each bind mount."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts[volume["target"]] = volume["source"]
            continue
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/", "~")):
            mounts[target] = source
    return mounts


def named_volumes(service: dict) -> set[str]:
    names = set()
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "volume":
                names.add(volume["source"])
        elif not volume.startswith((".", "/", "~")):
            names.add(volume.split(":")[0])
    return names


def published_ports(service: dict) -> dict[int, int]:
    """Host port -> container port."""
    ports = {}
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports[int(port["published"])] = int(port["target"])
        else:
            parts = str(port).split("/")[0].split(":")
            ports[int(parts[-2] if len(parts) > 1 else parts[-1])] = int(parts[-1])
    return ports


def pinned_version(package: str) -> str:
    for line in (REPO / "requirements-local.in").read_text().splitlines():
        name, _, version = line.split("#")[0].strip().partition("==")
        if name.lower() == package.lower():
            return version
    raise AssertionError(f"{package} is not pinned in requirements-local.in")


@pytest.fixture(scope="module")
def aws_options(services):
    """The StackOptions that the aws service's command line gives the real devstack CLI."""
    from devstack import __main__ as cli
    from devstack import stack

    argv = command(services["aws"])
    assert argv[:4] == ["python", "-m", "devstack", "up"], argv
    captured = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stack, "run_foreground", lambda options, **_: captured.update(options=options))
        assert cli.main(argv[3:]) == 0
    return captured["options"]


def database_urls(options) -> dict[str, str]:
    """Connection id -> URL of every database the stack's options name: those whose credentials the
    Glue jobs read from Secrets Manager (devstack.resources.database_secrets: ``<name>_db`` given by
    ``--<name>-url``), and Airflow's metadata database."""
    from devstack.resources import database_secrets

    urls = {conn_id: getattr(options, f"{conn_id.removesuffix('_db')}_url") for conn_id in database_secrets().values()}
    return {**urls, "airflow": options.airflow_url}


# -- the file is a valid compose file --------------------------------------------------------------


def declared_validator(schema: dict) -> type:
    """The validator of the draft the schema's ``$schema`` names.

    The compose schema writes draft-07 as ``https://json-schema.org/draft-07/schema``; jsonschema's
    ``validator_for()`` knows it only as ``http://...draft-07/schema#`` and would fall back to the
    latest draft with a mere warning, so the URI is compared without scheme and fragment.
    """

    def normalised(uri: str) -> str:
        return uri.split("://", 1)[-1].rstrip("#")

    drafts = {
        normalised(validator.META_SCHEMA.get("$id") or validator.META_SCHEMA["id"]): validator
        for validator in (
            jsonschema.Draft4Validator,
            jsonschema.Draft6Validator,
            jsonschema.Draft7Validator,
            jsonschema.Draft201909Validator,
            jsonschema.Draft202012Validator,
        )
    }
    declared = normalised(schema["$schema"])
    assert declared in drafts, f"jsonschema has no validator for {schema['$schema']}"
    return drafts[declared]


def test_compose_file_validates_against_the_compose_specification_schema(compose):
    schema = json.loads(SCHEMA_FILE.read_text())
    validator_class = declared_validator(schema)
    validator_class.check_schema(schema)
    errors = sorted(validator_class(schema).iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def _compose_cli_reason() -> str | None:
    """Why `docker compose config` cannot run here, or None when it can.

    `docker compose config` only parses and resolves the file: it needs the compose plugin, not a
    running engine, so the plugin is what is probed (`docker info` would wait for an engine that
    this check does not use).
    """
    docker = shutil.which("docker")
    if not docker:
        return "no docker CLI on PATH"
    try:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=5)
    except subprocess.TimeoutExpired:
        return "`docker compose version` did not answer within 5 s"
    if probe.returncode != 0:
        return f"the docker CLI has no compose plugin: {(probe.stderr or probe.stdout).strip().splitlines()[0]}"
    return None


def test_docker_compose_accepts_the_file_when_a_compose_cli_exists():
    if reason := _compose_cli_reason():
        pytest.skip(f"`docker compose config -q` cannot run here ({reason}); the schema test stands in for it")
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


# -- everything it names exists ------------------------------------------------------------------------


def test_every_host_path_build_file_and_volume_the_compose_file_names_exists(compose, services):
    missing = []
    for name, service in services.items():
        for target, source in bind_mounts(service).items():
            if not (REPO / source).exists():
                missing.append(f"{name}: bind mount {source} -> {target}")
        if "build" in service:
            context = service["build"] if isinstance(service["build"], str) else service["build"].get("context", ".")
            if not (REPO / context).is_dir():
                missing.append(f"{name}: build context {context}")
            if not dockerfile_of(service).is_file():
                missing.append(f"{name}: Dockerfile {dockerfile_of(service)}")
        env_files = service.get("env_file") or []
        for env_file in [env_files] if isinstance(env_files, str) else env_files:
            path = env_file if isinstance(env_file, str) else env_file["path"]
            if not (REPO / path).is_file():
                missing.append(f"{name}: env_file {path}")
        for volume in named_volumes(service):
            if volume not in (compose.get("volumes") or {}):
                missing.append(f"{name}: named volume {volume} is not declared under volumes:")
    assert not missing, missing


def test_every_file_the_dockerfile_copies_exists_and_is_in_the_build_context(services):
    dockerfile = dockerfile_of(services["aws"])
    sources = []
    for instruction, arguments in dockerfile_instructions(dockerfile):
        if instruction in ("COPY", "ADD"):
            sources += [part for part in shlex.split(arguments)[:-1] if not part.startswith("--")]
    assert sources, "the Dockerfile copies nothing"
    assert all((REPO / source).exists() for source in sources), sources
    ignored = {line.strip().rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", ".local", "dist"} <= ignored
    assert not {source.rstrip("/").split("/")[0] for source in sources} & ignored


def test_the_postgres_init_script_is_mounted_where_the_image_runs_init_scripts(services):
    mounts = bind_mounts(services["postgres"])
    assert (REPO / mounts["/docker-entrypoint-initdb.d"]).resolve() == INIT_SCRIPT.parent
    assert INIT_SCRIPT.is_file() and os.access(INIT_SCRIPT, os.X_OK)


# -- the image is the pinned Airflow release ----------------------------------------------------------------


def test_every_airflow_image_is_the_release_the_project_pins(services):
    airflow_version = pinned_version("apache-airflow")
    # The Python of MWAA's constraints file (requirements.txt's URL) is the image's Python.
    constraint_url = next(
        line for line in (REPO / "requirements.txt").read_text().splitlines() if line.startswith("--constraint")
    )
    python = re.search(rf"constraints-{re.escape(airflow_version)}/constraints-(\d+\.\d+)\.txt", constraint_url)
    assert python, f"requirements.txt's constraints are not Airflow {airflow_version}'s: {constraint_url}"
    expected = f"apache/airflow:{airflow_version}-python{python[1]}"

    references = {}
    for name, service in services.items():
        if "build" in service:
            (base,) = [args.split()[-1] for instruction, args in dockerfile_instructions(dockerfile_of(service))
                       if instruction == "FROM"]  # fmt: skip
            references[f"{name} (FROM)"] = base
        elif "airflow" in service.get("image", ""):
            references[f"{name} (image)"] = service["image"]
    assert references
    assert {ref: image for ref, image in references.items() if image != expected} == {}, expected
    for name in (*AIRFLOW_SERVICES, "airflow-init", "aws"):
        assert "build" in services[name], f"{name} does not run the project image"


def test_the_image_installs_requirements_txt_under_the_vendored_mwaa_constraints(services):
    text = dockerfile_of(services["aws"]).read_text()
    constraints = re.search(r"constraints/(mwaa-[\w.-]+\.txt)", text)
    assert constraints and (REPO / "constraints" / constraints[1]).is_file()
    assert f"--constraint /tmp/requirements/{constraints[1]}" in text
    # MWAA's --constraint URL is stripped: the build needs the package index only.
    assert "grep -v '^--constraint'" in text and "-r /tmp/requirements/requirements-mwaa.txt" in text
    assert "-r /tmp/requirements/requirements-stack.txt" in text
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in text and "pip install --no-cache-dir" in text


def test_the_local_stack_packages_in_the_image_have_the_local_pins():
    for line in (REPO / "docker" / "requirements-stack.txt").read_text().splitlines():
        requirement = line.split("#")[0].strip()
        if requirement:
            name, _, version = requirement.partition("==")
            assert version == pinned_version(name), requirement


def test_what_the_image_installs_resolves_for_python_3_12_under_the_mwaa_constraints(tmp_path):
    mwaa = [
        line for line in (REPO / "requirements.txt").read_text().splitlines() if not line.startswith("--constraint")
    ]
    (tmp_path / "requirements-mwaa.txt").write_text("\n".join(mwaa))
    (tmp_path / "airflow.txt").write_text(f"apache-airflow=={pinned_version('apache-airflow')}\n")
    uv = Path(sys.executable).with_name("uv")
    result = subprocess.run(
        [str(uv), "pip", "compile", "--quiet", "--python-version", "3.12",
         "-c", str(REPO / "constraints" / "mwaa-3.3.1-py3.12.txt"), str(tmp_path / "airflow.txt"),
         str(tmp_path / "requirements-mwaa.txt"), str(REPO / "docker" / "requirements-stack.txt"),
         "-o", str(tmp_path / "resolved.txt")],
        capture_output=True, text=True, env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    resolved = (tmp_path / "resolved.txt").read_text()
    for requirement in (f"moto=={pinned_version('moto[server]')}", "great-expectations==1.24.1"):
        assert requirement in resolved, requirement


# -- the services and how they connect --------------------------------------------------------------------


def test_the_system_has_postgres_aws_airflow_init_and_the_four_airflow_processes(services):
    assert {"postgres", "aws", "airflow-init", *AIRFLOW_SERVICES} <= set(services)
    assert services["postgres"]["image"].split(":") == ["postgres", "16"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    expected_commands = {
        "airflow-apiserver": ["api-server"],
        "airflow-scheduler": ["scheduler"],
        "airflow-dag-processor": ["dag-processor"],
        "airflow-triggerer": ["triggerer"],
        "airflow-init": ["db", "migrate"],
    }
    assert {name: command(services[name]) for name in expected_commands} == expected_commands


def test_the_api_server_publishes_8080(services):
    assert published_ports(services["airflow-apiserver"]) == {8080: 8080}


def test_airflow_init_migrates_once_and_every_airflow_process_waits_for_it_and_for_aws(services):
    init = services["airflow-init"]
    assert init["restart"] == "no"
    assert init["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in AIRFLOW_SERVICES:
        depends_on = services[name]["depends_on"]
        assert depends_on["airflow-init"]["condition"] == "service_completed_successfully", name
        assert depends_on["aws"]["condition"] == "service_healthy", name
    assert services["aws"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in services["aws"]


def test_the_aws_service_runs_the_same_code_as_make_stack(services, aws_options):
    make_stack = re.search(r"^stack:.*\n\t(.+)$", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert make_stack and make_stack[1].endswith("python -m devstack up")
    assert aws_options.aws_host == "0.0.0.0"  # reachable from the other containers
    assert published_ports(services["aws"]) == {aws_options.aws_port: aws_options.aws_port}
    # Every database is the postgres service's, so no embedded PostgreSQL starts in the container;
    # the Airflow metadata database is migrated by airflow-init, not by the stack.
    assert all(urlsplit(url).hostname == "postgres" for url in database_urls(aws_options).values())
    assert aws_options.migrate_airflow_db is False
    # The healthcheck waits for stack.env, which the stack writes once everything is provisioned.
    assert str(aws_options.state_dir / "stack.env") in " ".join(services["aws"]["healthcheck"]["test"])
    # The code that runs is the working copy's: mounted where the image puts devstack/ on PYTHONPATH.
    assert (REPO / bind_mounts(services["aws"])["/opt/project/devstack"]).resolve() == REPO / "devstack"
    env = [
        args for instruction, args in dockerfile_instructions(dockerfile_of(services["aws"])) if instruction == "ENV"
    ]
    assert any(args.startswith("PYTHONPATH=/opt/project") for args in env), env


def test_airflow_processes_get_the_variables_and_connections_of_make_stack(services, aws_options):
    from devstack.stack import stack_environment

    compose_env = environment(services["airflow-apiserver"])
    urls = database_urls(aws_options)
    # stack_environment() fed with the compose stack's own endpoint and URLs: the same names, and the
    # same values except for the folders, which are container paths here.
    stack_env = stack_environment(compose_env["AWS_ENDPOINT_URL"], urls, Path("/unused-state-dir"))

    connections = {key for key in compose_env if key.startswith("AIRFLOW_CONN_")}
    assert connections == {key for key in stack_env if key.startswith("AIRFLOW_CONN_")}
    assert set(stack_env) <= set(compose_env), set(stack_env) - set(compose_env)
    for key, value in stack_env.items():
        if key in CONTAINER_PATH_VARIABLES:
            continue
        if key.startswith("AIRFLOW_CONN_"):
            assert json.loads(compose_env[key]) == json.loads(value), key
        else:
            assert compose_env[key] == value, key

    endpoint = urlsplit(compose_env["AWS_ENDPOINT_URL"])
    assert (endpoint.hostname, endpoint.port) == ("aws", aws_options.aws_port)
    mounts = bind_mounts(services["airflow-apiserver"])
    for key, folder in CONTAINER_PATH_VARIABLES.items():
        if folder:
            assert (REPO / mounts[compose_env[key]]).resolve() == REPO / folder, key
    from devstack.airflow_config import local_airflow_config

    for key, value in local_airflow_config().items():  # as make airflow polls Glue and makes AWS sessions
        assert compose_env[key] == value, key


def test_every_airflow_process_shares_the_same_settings_and_mounts(services):
    reference = services["airflow-apiserver"]
    for name in (*AIRFLOW_SERVICES, "airflow-init"):
        assert environment(services[name]) == environment(reference), name
        assert bind_mounts(services[name]) == bind_mounts(reference), name
        assert services[name]["image"] == services["aws"]["image"], name
    env = environment(reference)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("simple_auth_manager.SimpleAuthManager")
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "True"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"]


def test_every_airflow_option_the_compose_file_sets_exists_in_airflow_config(services):
    """AIRFLOW__SECTION__KEY variables with a typo are silently ignored; config.yml lists the real
    ones, the Amazon provider its own ([aws] ...), and the project's own section lists its options
    in etl_toolkit.settings."""
    from airflow.providers.amazon.get_provider_info import get_provider_info

    from etl_toolkit.settings import CONFIG_OPTIONS, CONFIG_SECTION

    config_yml = Path(find_spec("airflow").submodule_search_locations[0]) / "config_templates" / "config.yml"
    options = {
        (section, option)
        for section, spec in yaml.safe_load(config_yml.read_text()).items()
        for option in spec["options"]
    } | {(CONFIG_SECTION, option) for option in CONFIG_OPTIONS}
    options |= {
        (section, option) for section, spec in get_provider_info()["config"].items() for option in spec["options"]
    }
    # [core] mp_start_method's own description allows it per component, in sections that do not list it.
    start_method = yaml.safe_load(config_yml.read_text())["core"]["options"]["mp_start_method"]["description"]
    options |= {
        (component, "mp_start_method")
        for component in ("scheduler", "triggerer", "dag_processor")
        if f"``[{component}]``" in start_method
    }
    settings = {key for key in environment(services["airflow-apiserver"]) if key.startswith("AIRFLOW__")}
    unknown = {key for key in settings if tuple(key.lower().split("__")[1:]) not in options}
    assert not unknown, unknown


# -- one database per purpose, as devstack/warehouse.py makes them ------------------------------------------------


def test_each_connection_uses_the_database_role_and_password_the_postgres_service_creates(services, aws_options):
    from devstack.warehouse import DATABASE_ROLES

    calls = re.findall(r'^create_database (\w+) (\w+) "\$(\w+)"$', INIT_SCRIPT.read_text(), re.MULTILINE)
    created = {database: (role, variable) for database, role, variable in calls}
    assert {database: role for database, (role, _) in created.items()} == DATABASE_ROLES
    postgres_env = environment(services["postgres"])
    for url in database_urls(aws_options).values():
        parts = urlsplit(url)
        role, variable = created[parts.path.lstrip("/")]
        assert (unquote(parts.username), unquote(parts.password)) == (role, postgres_env[variable]), url
        assert parts.port == 5432
    airflow_url = aws_options.airflow_url.replace("postgresql://", "postgresql+psycopg2://", 1)
    assert environment(services["airflow-apiserver"])["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == airflow_url


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def blank_postgres(tmp_path):
    """A new PostgreSQL 16 from the pgserver wheel, as the postgres image's init scripts find theirs:
    nothing but the superuser ``postgres``. Yields the libpq environment that reaches it."""
    pgserver = pytest.importorskip("pgserver._commands")
    bin_dir = pgserver.POSTGRES_BIN_PATH
    root, superuser_password = tmp_path / "postgres", "init-test-superuser"
    root.mkdir()
    (root / "pw").write_text(superuser_password)
    run_as = []
    if os.geteuid() == 0:  # PostgreSQL refuses root; pgserver's system user runs it (as in devstack)
        from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

        ensure_user_exists("pgserver")
        ensure_prefix_permissions(root)
        ensure_folder_permissions(bin_dir, 0o055)
        ensure_folder_permissions(bin_dir.parent / "lib", 0o044)
        for path in (root, root / "pw"):
            shutil.chown(path, "pgserver", "pgserver")
        run_as = ["runuser", "-u", "pgserver", "--"]
    data, port = root / "data", _free_port()
    initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=scram-sha-256"]
    initdb.append(f"--pwfile={root / 'pw'}")
    subprocess.run([*run_as, *initdb], check=True, capture_output=True)
    pg_ctl = [*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-t", "30", "-l", str(root / "server.log")]
    subprocess.run([*pg_ctl, "-o", f"-h 127.0.0.1 -p {port} -k ''", "start"], check=True, capture_output=True)
    try:
        yield {
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "PGHOST": "127.0.0.1",
            "PGPORT": str(port),
            "PGPASSWORD": superuser_password,
        }
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "stop"], capture_output=True)


def test_postgres_init_script_creates_each_database_owned_by_its_role_with_the_compose_password(
    services, aws_options, blank_postgres
):
    import psycopg2

    postgres_env = environment(services["postgres"])
    result = subprocess.run(
        ["bash", str(INIT_SCRIPT)], env={**blank_postgres, **postgres_env}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    for url in database_urls(aws_options).values():
        parts = urlsplit(url)
        # The compose stack's own credentials, against the server the script set up (scram checked).
        conn = psycopg2.connect(
            host=blank_postgres["PGHOST"], port=blank_postgres["PGPORT"], dbname=parts.path.lstrip("/"),
            user=unquote(parts.username), password=unquote(parts.password),
        )  # fmt: skip
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()")
                assert cur.fetchone()[0] == unquote(parts.username), url
                cur.execute("CREATE TABLE owner_can_create (id int)")  # the role can build its schema
        finally:
            conn.close()
