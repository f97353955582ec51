"""The config schema: Literal options checked when a config is built, a docstring on every field, one builder,
configs never changed in place, components built from their config sections."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Literal

import pytest
from omegaconf import OmegaConf

from neural3d.apps.point_classification.config import PCTrainConfig, build_pc_config
from neural3d.config import (
    ConfigError,
    TrainConfig,
    build,
    build_config,
    check_choices,
    choice_fields,
    config_class,
    field_docs,
    instantiate,
    literal_values,
    omegaconf_schema,
    replace,
    structured,
)
from neural3d.methods.nid.config import NIDFitConfig, NIDTrainConfig
from neural3d.methods.nid.family import NIDFamilyConfig
from neural3d.methods.registry import available_methods, get_method

PACKAGE = Path(__file__).resolve().parents[1] / "neural3d"

# ------------------------------------------------------------------------------------------ Literal options
# (builder, key=value, key named in the error, allowed values named in the error)
BAD_OPTIONS = [
    ("train", "trainer.optim.schedule=linear", "trainer.optim.schedule", "'exp', 'cosine', 'constant'"),
    ("train", "trainer.mixed_precision=fp8", "trainer.mixed_precision", "'auto', 'off', 'bf16', 'fp16'"),
    ("train", "data.format=colmap", "data.format", "'auto', 'blender', 'llff', 'transforms', 'dtu'"),
    ("train", "data.synth.layout=colmap", "data.synth.layout", "'blender', 'llff', 'dtu'"),
    ("train", "eval.lpips_net=squeeze", "eval.lpips_net", "'vgg', 'alex'"),
    ("gnt", "model.selection=random", "model.selection", "'auto', 'dist', 'vector', 'matrix'"),
    ("gnt", "model.family.layout=dtu", "model.family.layout", "'blender', 'llff'"),
    ("nid", "model.encoding=hash", "model.encoding", "'pe', 'fourier', 'identity'"),
    ("ngp", "model.contraction=sphere", "model.contraction", "'aabb', 'inf', 'l2'"),
    ("ngp", "model.hashgrid_backend=cuda", "model.hashgrid_backend", "'auto', 'torch', 'cpu', 'tcnn', 'triton'"),
    ("ngp", "model.sampler.weighting=even", "model.sampler.weighting", "'occupancy', 'density'"),  # a section
    ("point_field", "model.size=huge", "model.size", "'tiny', 'small', 'base'"),
    ("nid_train", "experts.encoding=hash", "experts.encoding", "'fourier', 'pe', 'identity'"),
    ("nid_train", "experts.activation=gelu", "experts.activation", "'relu', 'sine'"),
    ("nid_train", "gate.type=mlp", "gate.type", "'conv', 'codebook'"),
    ("nid_train", "loss.recon=huber", "loss.recon", "'mse', 'l1'"),
    ("nid_fit", "method=newton", "method", "'lstsq', 'gradient'"),
    ("nid_fit", "init=zeros", "init", "'auto', 'encoder', 'ridge'"),
    ("nid_fit", "loss=huber", "loss", "'mse', 'l1'"),
    ("nid_fit", "support=half", "support", "'all', 'topk'"),
    ("nid_fit", "prior=laplace", "prior", "'gaussian', 'none'"),
    ("nid_fit", "finetune_select=best", "finetune_select", "'validation', 'fixed'"),
    ("nid_fit", "corruption=blur", "corruption", "'none', 'stripes', 'saltpepper'"),
    ("nid_family", "model.encoding=hash", "model.encoding", "'pe', 'fourier', 'identity'"),
    ("pointcloud", "task=detect", "task", "'cls', 'seg'"),
    ("pointcloud", "data.kind=scannet", "data.kind", "'synthetic', 'modelnet40', 'shapenetpart'"),
    ("pointcloud", "model.size=huge", "model.size", "'tiny', 'small', 'base'"),
    ("pointcloud", "model.tokenizer=patch", "model.tokenizer", "'point', 'voxel'"),
]


def _build(family: str, override: str):
    if family in ("train", "gnt", "nid", "ngp", "point_field"):
        return build_config({"method": "nerf" if family == "train" else family}, [override])
    schema = {"nid_train": NIDTrainConfig, "nid_fit": NIDFitConfig, "nid_family": NIDFamilyConfig}.get(family)
    return build(schema, {}, [override]) if schema else build_pc_config({"data": {"path": "shapes"}}, [override])


@pytest.mark.parametrize("family,override,key,allowed", BAD_OPTIONS, ids=lambda x: str(x))
def test_bad_option_names_key_value_and_allowed_values(family, override, key, allowed):
    with pytest.raises(ConfigError) as e:
        _build(family, override)
    msg = str(e.value)
    bad = override.split("=", 1)[1]
    assert f"'{key}'" in msg and f"got '{bad}'" in msg and f"[{allowed}]" in msg, msg
    assert msg.startswith("overrides:")  # the source that brought the bad value


@pytest.mark.parametrize("family,override,key,allowed", BAD_OPTIONS, ids=lambda x: str(x))
def test_every_allowed_value_builds(family, override, key, allowed):
    for value in re.findall(r"'([^']*)'", allowed):
        _build(family, f"{override.split('=')[0]}={value}")


def test_bad_option_in_a_yaml_file_names_the_file(tmp_path):
    from neural3d.config import load

    path = tmp_path / "fit.yaml"
    path.write_text("method: newton\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: 'method' must be one of"):
        load(NIDFitConfig, path)


def test_literal_values_match_the_components_that_use_them():
    """A Literal field and the constant of the component it configures cannot drift apart."""
    from neural3d.apps.image_dictionary.workflows import CORRUPTIONS, FIT_METHODS, SUPPORTS
    from neural3d.data.load import FORMATS
    from neural3d.evaluation.lpips import BACKBONE_SPECS
    from neural3d.methods.gnt.model import GNTModelConfig
    from neural3d.methods.gnt.selection import METHODS
    from neural3d.methods.nid.encodings import ENCODINGS
    from neural3d.methods.nid.experts import ACTIVATIONS
    from neural3d.methods.nid.gating import GATE_TYPES
    from neural3d.methods.nid.losses import RECON_LOSSES
    from neural3d.pointcloud.encoder import TOKENIZERS

    train, nid, fit, pc = (choice_fields(c) for c in (TrainConfig, NIDTrainConfig, NIDFitConfig, PCTrainConfig))
    assert set(train["data.format"]) == {"auto", *FORMATS}
    assert set(train["eval.lpips_net"]) == set(BACKBONE_SPECS)
    assert set(choice_fields(GNTModelConfig)["selection"]) == {"auto", *METHODS}
    assert set(nid["experts.encoding"]) == set(ENCODINGS)
    assert set(choice_fields(get_method("nid").config_class)["encoding"]) == set(ENCODINGS)
    assert set(nid["experts.activation"]) == set(ACTIVATIONS)
    assert set(nid["gate.type"]) == set(GATE_TYPES)
    assert set(nid["loss.recon"]) == set(RECON_LOSSES) == set(fit["loss"])
    assert set(fit["method"]) == set(FIT_METHODS) and set(fit["support"]) == set(SUPPORTS)
    assert set(fit["corruption"]) == set(CORRUPTIONS)
    assert set(pc["model.tokenizer"]) == set(TOKENIZERS)


@dataclass
class _Inner:
    mode: Literal["a", "b"] = "a"
    maybe: Literal["x", "y"] | None = None


@dataclass
class _Outer:
    inner: _Inner = field(default_factory=_Inner)
    size: int = 1


def test_walker_and_omegaconf_schema_on_a_toy_config():
    assert literal_values(Literal["a", "b"]) == ("a", "b")
    assert literal_values(Literal["x"] | None) == ("x", None)
    assert literal_values(str) is None
    assert choice_fields(_Outer) == {"inner.mode": ("a", "b"), "inner.maybe": ("x", "y", None)}
    schema = omegaconf_schema(_Outer)  # what OmegaConf sees: Literal stored as str (OmegaConf 2.3 has no Literal)
    assert issubclass(schema, _Outer) and schema.__name__ == "_Outer"
    inner = {f.name: f.type for f in fields(omegaconf_schema(_Inner))}
    assert inner["mode"] is str and inner["maybe"] == (str | None)
    assert omegaconf_schema(NIDTrainConfig) is not NIDTrainConfig
    assert omegaconf_schema(get_method("nerf").config_class) is get_method("nerf").config_class  # no Literal
    cfg = build(_Outer, {"inner": {"maybe": "y"}})
    assert cfg.inner.mode == "a" and cfg.inner.maybe == "y" and config_class(cfg) is _Outer
    with pytest.raises(ConfigError, match=r"'inner.maybe' must be one of \['x', 'y', None\], got 'z'"):
        build(_Outer, {"inner": {"maybe": "z"}})
    check_choices(_Outer(), _Outer)  # dataclass instances too
    with pytest.raises(ConfigError, match="'inner.mode'"):
        check_choices(_Outer(inner=_Inner(mode="c")), _Outer)  # type: ignore[arg-type]


def test_built_configs_keep_their_dataclass_and_defaults():
    for schema in (TrainConfig, NIDTrainConfig, NIDFitConfig, NIDFamilyConfig, PCTrainConfig):
        cfg = structured(schema)
        assert config_class(cfg) is schema
        assert OmegaConf.to_container(cfg) == OmegaConf.to_container(OmegaConf.structured(omegaconf_schema(schema)))
    fit = build(NIDFitConfig, NIDFitConfig(method="gradient"))  # a dataclass instance as input
    assert fit.method == "gradient" and fit.init == "auto"


# ------------------------------------------------------------------------------------------ one builder
def test_one_config_builder():
    """Only neural3d/config.py merges into OmegaConf schemas; the other config modules declare dataclasses."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "config.py" and path.parent == PACKAGE:
            continue
        text = path.read_text()
        if re.search(r"OmegaConf\.(structured|merge)\(|from neural3d\.config import [^\n]*\b_merge\b", text):
            offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == []


# ------------------------------------------------------------------------------------------ field docstrings
def _config_dataclasses_in_source() -> list[tuple[Path, ast.ClassDef]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            decorated = isinstance(node, ast.ClassDef) and any(
                (d.id if isinstance(d, ast.Name) else getattr(d, "attr", getattr(getattr(d, "func", None), "id", "")))
                == "dataclass"
                for d in node.decorator_list
            )
            if decorated and node.name.endswith("Config"):
                found.append((path, node))
    return found


def test_every_config_dataclass_field_has_a_docstring():
    classes = _config_dataclasses_in_source()
    assert len(classes) >= 26  # 26 in this tree (the issue counted 27 config dataclasses at b3c48c1)
    missing = []
    for path, node in classes:
        body = node.body
        for stmt, nxt in zip(body, [*body[1:], None]):
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
                continue
            doc = nxt.value.value if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) else None
            if not (isinstance(doc, str) and doc.strip()):
                missing.append(f"{path.relative_to(PACKAGE)}:{node.name}.{stmt.target.id}")
        if not ast.get_docstring(node):
            missing.append(f"{path.relative_to(PACKAGE)}:{node.name} (class docstring)")
    assert missing == []


def _reachable_config_classes() -> set[type]:
    roots = [TrainConfig, NIDTrainConfig, NIDFitConfig, NIDFamilyConfig, PCTrainConfig]
    roots += [get_method(m).config_class for m in available_methods()]
    seen: set[type] = set()
    while roots:
        cls = roots.pop()
        if cls in seen:
            continue
        seen.add(cls)
        from typing import get_type_hints

        roots += [t for t in get_type_hints(cls).values() if isinstance(t, type) and is_dataclass(t)]
        for f in fields(cls):  # type-keyed sections (model.sampler, model.eval_sampler): every variant
            roots += [type(v) for v in f.metadata.get("variants", {}).values()]
    return seen


def test_every_reachable_config_section_is_documented_at_runtime():
    """The same check through :func:`field_docs`, over every section a builder can reach."""
    for cls in _reachable_config_classes():
        docs = field_docs(cls)
        assert {f.name for f in fields(cls)} <= set(docs), cls.__name__


# ------------------------------------------------------------------------------------------ no mutation
def test_replace_returns_a_new_config_and_checks_it():
    cfg, _ = build_config({"method": "nid"})
    new = replace(cfg, {"trainer": {"steps": 7}, "model": {"n_codes": 3}})
    assert (new.trainer.steps, new.model.n_codes) == (7, 3)
    assert (cfg.trainer.steps, cfg.model.n_codes) == (2000, 1)
    with pytest.raises(ConfigError, match="'trainer.optim.schedule'"):
        replace(cfg, {"trainer": {"optim": {"schedule": "linear"}}})
    with pytest.raises(ConfigError, match="trainer.stepz"):
        replace(cfg, {"trainer": {"stepz": 1}})


def test_no_config_is_assigned_to_in_the_package():
    """Configs are built once; a changed value means a new config (:func:`neural3d.config.replace`)."""
    pattern = re.compile(
        r"\b(cfg|config|model_cfg|self\.cfg|self\.config)(\.[A-Za-z_]\w*)+\s*=[^=]|OmegaConf\.update|setattr\(\s*(cfg|config)"
    )
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line.split("#")[0]) and "cfg.model = model_cfg" not in line:  # the builder assembling
                offenders.append(f"{path.relative_to(PACKAGE)}:{i}: {line.strip()}")
    assert offenders == []


def test_family_training_does_not_change_the_callers_config(tmp_path):
    from neural3d.data.synthetic import write_scene_family
    from neural3d.methods.nid.family import train_family

    root = tmp_path / "family"
    write_scene_family(root, n_scenes=2, seed=0, res=16, n_train=3, n_val=1, n_test=1, supersample=1)
    cfg = build(
        NIDFamilyConfig,
        {"family": str(root), "steps": 1, "rays_per_scene": 8, "log_every": 1},
        ["model.num_experts=4", "model.topk=2", "model.hidden_dim=8", "model.n_samples=4"],
    )
    before = OmegaConf.to_container(cfg)
    model = train_family(cfg, log=lambda _: None)
    assert model.field.codes.shape[0] == 2  # one code per scene ...
    assert OmegaConf.to_container(cfg) == before  # ... without touching the caller's config


# ------------------------------------------------------------------------------------------ builders
def test_instantiate_passes_the_fields_that_name_parameters():
    @dataclass
    class Section:
        width: int = 8
        depth: int = 2
        n_samples: int = 64  # configures something else

    def target(*, width: int, depth: int = 1, scale: float = 1.0):
        return width, depth, scale

    assert instantiate(target, Section()) == (8, 2, 1.0)
    assert instantiate(target, OmegaConf.structured(Section(width=3)), scale=2.0) == (3, 2, 2.0)
    assert instantiate(target, Section(), depth=5) == (8, 5, 1.0)  # explicit arguments win


BUILDERS = [  # where components are built from config sections (see neural3d.config.instantiate)
    "methods/gnt/model.py",
    "methods/nid/model.py",
    "methods/point_field/model.py",
    "apps/image_dictionary/train.py",
    "apps/image_dictionary/run.py",
    "apps/point_classification/train.py",
    "methods/ngp/model.py",
    "methods/nerf/model.py",
    "samplers/config.py",
]


@pytest.mark.parametrize("path", BUILDERS)
def test_components_are_built_from_their_config_sections(path):
    """No call copies a config section field by field: at most 2 arguments ``x=<section>.x`` per call."""
    copies = []
    for node in ast.walk(ast.parse((PACKAGE / path).read_text())):
        if isinstance(node, ast.Call):
            same = [
                kw.arg
                for kw in node.keywords
                if isinstance(kw.value, ast.Attribute)
                and kw.value.attr == kw.arg
                and isinstance(kw.value.value, ast.Name)
            ]
            if len(same) > 2:
                copies.append((node.lineno, same))
    assert copies == []


# ------------------------------------------------------------------------------------------ derived values
def test_point_field_spherify_follows_the_data_section():
    _, model_cfg = build_config({"method": "point_field"})
    assert model_cfg.spherify is False
    _, model_cfg = build_config({"method": "point_field", "data": {"spherify": True}})
    assert model_cfg.spherify is True
    _, model_cfg = build_config({"method": "point_field", "data": {"spherify": True}, "model": {"spherify": True}})
    assert model_cfg.spherify is True
    with pytest.raises(ConfigError, match="model.spherify=True contradicts data.spherify=False"):
        build_config({"method": "point_field"}, ["model.spherify=true"])


def test_option_written_as_a_yaml_boolean_word(tmp_path):
    """``off`` is a boolean in YAML 1.1; an option allowing the word 'off' takes it as that word, not 'False'."""
    cfg, _ = build_config({"method": "nerf"}, ["trainer.mixed_precision=off"])
    assert cfg.trainer.mixed_precision == "off"
    path = tmp_path / "run.yaml"
    path.write_text("method: nerf\ntrainer: {mixed_precision: off}\n")
    from neural3d.config import load_config

    assert load_config(path)[0].trainer.mixed_precision == "off"
    with pytest.raises(ConfigError, match="got 'True'"):
        build_config({"method": "nerf"}, ["trainer.mixed_precision=on"])  # 'on' is not an allowed value


def test_built_configs_pickle_and_copy():
    import copy
    import pickle

    for schema in (NIDFitConfig, PCTrainConfig, NIDFamilyConfig):
        cfg = build(schema)
        assert OmegaConf.to_container(pickle.loads(pickle.dumps(cfg))) == OmegaConf.to_container(cfg)
        assert config_class(copy.deepcopy(cfg)) is schema
    cfg, model_cfg = build_config({"method": "gnt"})
    assert pickle.loads(pickle.dumps(model_cfg)).selection == "auto"
