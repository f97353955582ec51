"""Old import paths (neural3d/_compat.py): each still imports, warns DeprecationWarning and exposes the new objects."""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys
import types
import warnings

import pytest

import neural3d
from neural3d._compat import MOVED


def _public_names(module: types.ModuleType) -> list[str]:
    """``__all__``, else the public functions and classes the module defines itself."""
    names = getattr(module, "__all__", None)
    if names is not None:
        return list(names)
    return [
        n
        for n, v in vars(module).items()
        if not n.startswith("_")
        and (inspect.isfunction(v) or inspect.isclass(v))
        and getattr(v, "__module__", None) == module.__name__
    ]


def _assert_new_modules_intact() -> None:
    """Importing an old path changes no new module: its ``__spec__`` and the package attributes that lead to it."""
    for name, module in list(sys.modules.items()):
        if not name.startswith("neural3d.") or name in MOVED or not isinstance(module, types.ModuleType):
            continue
        assert module.__spec__ is not None and module.__spec__.name == name, f"{name}.__spec__ is {module.__spec__}"
        parent, leaf = name.rsplit(".", 1)
        attr = getattr(sys.modules.get(parent), leaf, None)
        assert not isinstance(attr, types.ModuleType) or attr is module, f"{parent}.{leaf} is {attr}, not {name}"


@pytest.fixture
def fresh_old_path():
    """Forget old module names imported by a test, so the next import runs the alias (and warns) again."""
    before = {name: sys.modules[name] for name in MOVED if name in sys.modules}
    yield
    for name in MOVED:
        sys.modules.pop(name, None)
    sys.modules.update(before)


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_path_imports_warns_and_exposes_the_new_objects(old, fresh_old_path):
    new = MOVED[old]
    parent = old.rsplit(".", 1)[0]
    if parent in MOVED:  # its own warning is another case's
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            importlib.import_module(parent)
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=rf"{old} moved to .*{new[-1]}"):
        mod = importlib.import_module(old)
    assert sys.modules[old] is mod
    parts = [importlib.import_module(n) for n in new]
    _assert_new_modules_intact()
    if len(parts) == 1 and not any(name.startswith(old + ".") for name in MOVED):
        assert mod is parts[0]
        return
    exposed = set()
    for part in parts:  # a split module: every name of every successor, as the same object
        for name in _public_names(part):
            if name in exposed:
                continue  # an earlier successor's name of the same spelling wins (checked below)
            exposed.add(name)
            assert getattr(mod, name) is getattr(part, name), f"{old}.{name} is not {part.__name__}.{name}"
    assert exposed, f"{old}: its successors define no public names"
    with pytest.raises(AttributeError, match="no attribute"):
        mod.no_such_name  # noqa: B018


def test_old_child_import_leaves_the_new_package_alone(fresh_old_path):
    """``neural3d.models.gnt`` is ``neural3d.methods.gnt.model``: importing it must not rebind
    ``neural3d.methods.gnt``."""
    with pytest.warns(DeprecationWarning):
        import neural3d.models.gnt as old_gnt
    import neural3d.methods
    import neural3d.methods.gnt.model as new_gnt

    assert old_gnt is new_gnt and neural3d.methods.gnt is sys.modules["neural3d.methods.gnt"]
    assert new_gnt.__spec__.name == "neural3d.methods.gnt.model"
    _assert_new_modules_intact()


def test_split_successors_do_not_shadow_each_other():
    """A name defined by two successors of one split module would reach only the first: there is none."""
    for old, new in MOVED.items():
        if len(new) < 2:
            continue
        seen: dict[str, str] = {}
        for part in (importlib.import_module(n) for n in new):
            for name in _public_names(part):
                obj = getattr(part, name)
                first = seen.setdefault(name, part.__name__)
                if first != part.__name__:
                    assert getattr(importlib.import_module(first), name) is obj, f"{old}.{name}: {first} shadows"


def test_old_from_imports_work(fresh_old_path):
    with pytest.warns(DeprecationWarning):
        from neural3d.camera_paths import load_camera_path, look_at, orbit_path  # split module
        from neural3d.models.ngp import NGPModel
    from neural3d.core.poses import look_at as new_look_at
    from neural3d.media.camera_path_json import load_camera_path as new_load
    from neural3d.media.paths import orbit_path as new_orbit
    from neural3d.methods.ngp.model import NGPModel as NewNGPModel

    assert NGPModel is NewNGPModel and load_camera_path is new_load
    assert look_at is new_look_at and orbit_path is new_orbit


def _warnings_in_fresh_interpreter(statements: str) -> list[list[str]]:
    code = (
        "import json, warnings\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        + "".join(f"    {line}\n" for line in statements.splitlines())
        + "print(json.dumps([[x.category.__name__, str(x.message), x.filename] for x in w]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_import_neural3d_does_not_warn():
    """In a fresh interpreter ``import neural3d`` issues no DeprecationWarning and no warning from neural3d."""
    caught = _warnings_in_fresh_interpreter("import neural3d\nneural3d.load, neural3d.LoadedScene")
    ours = [c for c in caught if c[0] == "DeprecationWarning" or "neural3d" in c[1] or "neural3d" in c[2]]
    assert not ours, f"import neural3d warned: {ours}"
    assert neural3d.__version__


def test_new_modules_use_no_old_path():
    """Importing every successor module (fresh interpreter) goes through no deprecated alias."""
    new = sorted({n for successors in MOVED.values() for n in successors})
    caught = _warnings_in_fresh_interpreter(
        "import importlib\n" + "\n".join(f"importlib.import_module({n!r})" for n in new)
    )
    aliases = [c for c in caught if "old import path" in c[1]]
    assert not aliases, f"neural3d imports its own old paths: {aliases}"
