"""The headless core never imports Textual; devicesim and neurontop never import each other."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "neurontop" / "core"
HEADLESS = sorted(p for p in CORE.rglob("*.py") if p.name != "__init__.py")


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


@pytest.mark.parametrize("path", HEADLESS, ids=lambda p: str(p.relative_to(CORE)))
def test_headless_module_does_not_load_textual(path: Path) -> None:
    mod = _module(path)
    code = f"import sys, {mod}; print('textual' in sys.modules or any(m.startswith('textual.') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False", f"{mod} pulls in textual"


def _imports(package: str) -> set[str]:
    names: set[str] = set()
    for py in (ROOT / package).rglob("*.py"):
        tree = ast.parse(py.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def test_packages_do_not_import_each_other() -> None:
    assert "neurontop" not in _imports("devicesim")
    assert "devicesim" not in _imports("neurontop")


def test_devicesim_runtime_does_not_load_neurontop() -> None:
    code = "import sys, devicesim.cli, devicesim.server; print(any(m.startswith('neurontop') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_monitor_hardware_figures_match_simulator_presets() -> None:
    from devicesim.presets import PRESETS
    from neurontop.core.telemetry.hardware import CHIPS

    for p in PRESETS.values():
        chip = CHIPS[p.device_type]
        assert chip.hbm_bytes == p.hbm_bytes
        assert chip.hbm_bw == pytest.approx(p.hbm_bw)
        assert chip.bf16_flops == pytest.approx(p.chip_bf16_flops)
        assert chip.phys_cores == p.phys_cores_per_device


def test_the_facts_both_packages_keep_a_copy_of_agree(tmp_path, monkeypatch) -> None:
    """devicesim and neurontop never import each other, so the wire protocol's name and version, the
    default socket path and the planted-socket check are written in both: they must agree."""
    import os
    import socket

    from devicesim import engine, server
    from neurontop.core.telemetry import sources

    assert (engine.PROTOCOL, engine.PROTOCOL_VERSION) == (sources.PROTOCOL, sources.PROTOCOL_VERSION)
    for runtime in (str(tmp_path), None):
        if runtime is None:
            monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
        else:
            monkeypatch.setenv("XDG_RUNTIME_DIR", runtime)
        assert server.default_socket_path() == sources.default_socket_path()
    folder = tmp_path / "f"
    folder.mkdir()
    path = str(folder / "s.sock")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(path)
    try:
        for mode in (0o700, 0o755, 0o777):
            os.chmod(folder, mode)
            assert (server.unsafe_socket(path) is None) == (sources.unsafe_socket(path) is None) == (mode == 0o700)
    finally:
        sock.close()


def test_the_layer_contracts_hold() -> None:
    """pyproject.toml's [tool.importlinter] contracts: cli > ui > core; inside the core telemetry <
    analysis | store < export < session; no Textual in the core; devicesim and neurontop apart."""
    exe = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(exe), "--no-cache"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def test_both_packages_type_check_with_zero_errors() -> None:
    """mypy at the strictness pyproject.toml's [tool.mypy] states (the benchmarks included)."""
    exe = Path(sys.executable).with_name("mypy")
    out = subprocess.run([str(exe), "--no-incremental"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and "Success: no issues found" in out.stdout, out.stdout[-4000:]
