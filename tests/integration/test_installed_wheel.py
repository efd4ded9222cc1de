"""shopflow as another team installs it: the wheel in a fresh virtual environment adds one
top-level import name, `shopflow`, and its pytest plugin runs examples/downstream there
against this repository's servers.

The environment is made once for the module (a minute or so: pip resolves the `testing`
extra from its cache or PyPI). It runs with the working directory outside the repository,
so nothing in the checkout can be imported by accident.
"""

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]


def _run(*argv: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"{argv}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel and its `testing` extra; its python."""
    root = tmp_path_factory.mktemp("wheel")
    # Built from a copy of the checkout: setuptools leaves build/ and *.egg-info behind
    # where it builds. The links of shopflow/ to the layers are copied as links.
    source = root / "source"
    shutil.copytree(
        REPOSITORY,
        source,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", ".infra", "build", "*.egg-info", "__pycache__", ".*_cache"
        ),
    )
    _run(
        sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", root / "dist",
        source, cwd=root,
    )  # fmt: skip
    [wheel] = (root / "dist").glob("shopflow-*.whl")
    venv.create(root / "env", with_pip=True)
    python = root / "env" / "bin" / "python"
    # The pip of `venv` (23.2) gives up on the OpenTelemetry betas' pins that a current
    # pip resolves; a team installing shopflow today has a current pip.
    _run(python, "-m", "pip", "install", "--quiet", "--upgrade", "pip", cwd=root)
    _run(python, "-m", "pip", "install", "--quiet", f"{wheel}[testing]", cwd=root)
    return python


def _site_packages(python: Path) -> Path:
    out = _run(
        python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=python.parent
    )
    return Path(out.strip())


def test_the_wheel_adds_exactly_one_top_level_name(installed: Path) -> None:
    site = _site_packages(installed)
    [dist_info] = site.glob("shopflow-*.dist-info")
    top_level = {
        line.split("/", 1)[0].removesuffix(".py")
        for line in (dist_info / "RECORD").read_text().splitlines()
        if not line.startswith(("shopflow-", "../", "__pycache__"))
    }
    assert top_level == {"shopflow"}
    # The layers are inside it, importable by their installed names, migrations included.
    out = _run(
        installed, "-c",
        "import shopflow.domain, shopflow.contracts.topics, shopflow.persistence.migrate as m;"
        "print(sorted(p.name for p in m.MIGRATIONS_DIR.joinpath('versions').glob('0*.py')))",
        cwd=site.parent,
    )  # fmt: skip
    assert "0001_initial.py" in out


def test_the_pytest_plugin_runs_a_neighbours_tests_from_the_wheel(
    installed: Path, tmp_path: Path
) -> None:
    shutil.copytree(REPOSITORY / "examples", tmp_path / "examples")
    env = {
        **os.environ,
        # The servers of this repository's `scripts/infra.sh`, named as a deployment would.
        "SHOPFLOW_INFRA_DIR": str(
            Path(os.environ.get("SHOPFLOW_INFRA_DIR", REPOSITORY / ".infra")).resolve()
        ),
        "SHOPFLOW_TEST_INFRA": "local",
    }
    env.pop("PYTHONPATH", None)
    out = _run(
        installed, "-m", "pytest", "-q", "-p", "no:cacheprovider", "examples/downstream",
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert " passed" in out
    assert "failed" not in out
    assert "skipped" not in out
