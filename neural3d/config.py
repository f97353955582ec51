"""Typed configuration: dataclasses + OmegaConf YAML files + ``key=value`` overrides. The one config builder.

Why OmegaConf structured configs: the schema is a dataclass (typed, every field documented by a string
literal under it, with defaults), YAML files only state what differs, and command-line overrides use the
same dotted keys. Every config of the package -- the scene-training :class:`TrainConfig` below, the NID
and point-classification configs, each method's model config -- is built by :func:`build` here:

* unknown keys and wrong types are rejected naming the key and listing the valid keys there;
* options are ``Literal[...]`` fields, checked when the config is built (:func:`check_choices`, one walk over
  the dataclass annotations), with an error naming the key, the bad value and the allowed values.
  OmegaConf >= 2.3 does not know ``Literal``, so the OmegaConf schema stores such fields as ``str``
  (:func:`omegaconf_schema`);
* numeric ranges are declared in the annotation (``steps: PositiveInt``, :mod:`neural3d.config_bounds`) and
  checked by the same walk: ``trainer.steps=0`` is an error naming the key, the range and the value;
* a built config is never changed in place: :func:`replace` returns a new one;
* components are built from a config section by :func:`instantiate` (no field copied by hand).

The ``model`` section of :class:`TrainConfig` is validated against the config dataclass registered for
``method``, so a new method is one module (its config dataclass and model class) plus one YAML file.
"""

from __future__ import annotations

import copy
import functools
import inspect
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, field, fields, is_dataclass, make_dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from neural3d.config_bounds import Bound, field_bound
from neural3d.training.train_config import (  # noqa: F401  (the schema, re-exported: neural3d.config.TrainConfig)
    DataConfig,
    EvalConfig,
    OptimConfig,
    RenderConfig,
    SynthConfig,
    TrainConfig,
    TrainerConfig,
    ViewerConfig,
)


class ConfigError(ValueError):
    """A configuration file or override is invalid."""


# ============================================================================ Literal options
def literal_values(annotation: Any) -> tuple | None:
    """The allowed values of a ``Literal[...]`` annotation (with ``None`` for ``Literal[...] | None``), else None."""
    if get_origin(annotation) is Literal:
        return get_args(annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1 and get_origin(args[0]) is Literal:
            return (*get_args(args[0]), None)
    return None


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


@functools.cache
def _annotated_hints(cls: type) -> dict[str, Any]:
    """Type hints with their ``Annotated`` metadata (the :class:`~neural3d.config_bounds.Bound` of a field)."""
    return get_type_hints(cls, include_extras=True)


def _section_class(annotation: Any) -> type | None:
    """The dataclass of a nested config section annotation, else None."""
    return annotation if isinstance(annotation, type) and is_dataclass(annotation) else None


def choice_fields(schema_cls: type) -> dict[str, tuple]:
    """Dotted key -> allowed values of every ``Literal`` field of ``schema_cls`` and of its nested sections."""
    out: dict[str, tuple] = {}
    for name, annotation in _type_hints(schema_cls).items():
        if name not in {f.name for f in fields(schema_cls)}:
            continue
        allowed = literal_values(annotation)
        if allowed is not None:
            out[name] = allowed
        elif (section := _section_class(annotation)) is not None:
            out.update({f"{name}.{key}": values for key, values in choice_fields(section).items()})
    return out


def bound_fields(schema_cls: type) -> dict[str, Bound]:
    """Dotted key -> :class:`~neural3d.config_bounds.Bound` of every range-annotated field of ``schema_cls`` and of
    its nested sections."""
    out: dict[str, Bound] = {}
    hints = _annotated_hints(schema_cls)
    for f in fields(schema_cls):
        if (bound := field_bound(hints[f.name])) is not None:
            out[f.name] = bound
        elif (section := _section_class(_type_hints(schema_cls)[f.name])) is not None:
            out.update({f"{f.name}.{key}": b for key, b in bound_fields(section).items()})
    return out


@functools.cache
def dynamic_sections(schema_cls: type) -> tuple[str, ...]:
    """Dotted keys of the fields of ``schema_cls`` (and of its nested sections) whose section dataclass is chosen
    when the config is built: fields annotated ``Any`` (:func:`variant_field` sections, ``TrainConfig.model``)."""
    out: list[str] = []
    for name, annotation in _type_hints(schema_cls).items():
        if name not in {f.name for f in fields(schema_cls)}:
            continue
        if annotation is Any:
            out.append(name)
        elif (section := _section_class(annotation)) is not None:
            out += [f"{name}.{key}" for key in dynamic_sections(section)]
    return tuple(out)


def check_choices(cfg: Any, schema_cls: type, source: str = "config", prefix: str = "") -> None:
    """Raise ConfigError naming the key, the bad value and the allowed values of the first invalid option, or the
    key, the range and the value of the first number outside its declared range (``PositiveInt``, ...).

    Sections held by ``Any`` fields (:func:`variant_field`, ``TrainConfig.model``) are checked against their own
    dataclass (:func:`config_class` of the value), so their options are checked too.
    """

    def value_at(key: str) -> Any:
        return OmegaConf.select(cfg, key) if isinstance(cfg, DictConfig) else _getattr_path(cfg, key)

    for key, allowed in choice_fields(schema_cls).items():
        value = value_at(key)
        if value not in allowed:
            raise ConfigError(f"{source}: '{prefix}{key}' must be one of {list(allowed)}, got {value!r}")
    for key, bound in bound_fields(schema_cls).items():
        value = value_at(key)
        if not bound.contains(value):
            raise ConfigError(f"{source}: '{prefix}{key}' must be {bound.describe()}, got {value!r}")
    for key in dynamic_sections(schema_cls):
        section = value_at(key)
        section_cls = config_class(section) if section is not None else None
        if section_cls is not None:
            check_choices(section, section_cls, source, f"{prefix}{key}.")


# YAML 1.1 reads off / no / on / yes as booleans, which a str field then stores as 'False' / 'True'.
_YAML_BOOL_WORDS = {"False": ("off", "no", "false"), "True": ("on", "yes", "true")}


def _yaml_bool_words(cfg: DictConfig, schema_cls: type) -> dict[str, Any]:
    """Nested changes restoring options written as a YAML boolean word (``mixed_precision: off``)."""
    changes: dict[str, Any] = {}
    for key, allowed in choice_fields(schema_cls).items():
        value = OmegaConf.select(cfg, key)
        words = [w for w in _YAML_BOOL_WORDS.get(value, ()) if w in allowed] if isinstance(value, str) else []
        if words and value not in allowed:
            node = changes
            *parents, leaf = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = words[0]
    return changes


def _getattr_path(obj: Any, key: str) -> Any:
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


# ============================================================================ the OmegaConf schema
def _plain_annotation(annotation: Any) -> Any:
    """``annotation`` as OmegaConf (>= 2.3) accepts it: ``Literal[...]`` -> the values' type, sections recursively."""
    allowed = literal_values(annotation)
    if allowed is not None:
        value_type = type(allowed[0])
        return value_type | None if None in allowed else value_type
    section = _section_class(annotation)
    return omegaconf_schema(section) if section is not None else annotation


def _as_schema_instance(obj: Any) -> Any:
    """A dataclass instance as an instance of its :func:`omegaconf_schema` (same values, sections too)."""
    if not (is_dataclass(obj) and not isinstance(obj, type)):
        return obj
    schema = omegaconf_schema(type(obj))
    if schema is type(obj):
        return obj
    return schema(**{f.name: _as_schema_instance(getattr(obj, f.name)) for f in fields(obj) if f.init})


def _schema_field(f: Any) -> Any:
    """A copy of dataclass field ``f`` whose default (factory) builds :func:`omegaconf_schema` instances."""
    if f.default_factory is not MISSING:
        factory = f.default_factory
        return field(default_factory=lambda: _as_schema_instance(factory()), metadata=f.metadata)
    return field(default=f.default, metadata=f.metadata)


@functools.cache
def omegaconf_schema(cls: type) -> type:
    """The dataclass OmegaConf builds ``cls``'s configs from: ``cls`` itself, or a subclass of it (same name)
    whose ``Literal`` fields (also in nested sections) are stored as their values' type (``str``).
    The allowed values are checked by :func:`check_choices` against ``cls``'s annotations."""
    hints = _type_hints(cls)
    changed = [f for f in fields(cls) if _plain_annotation(hints[f.name]) is not hints[f.name]]
    if not changed:
        return cls
    spec = [(f.name, _plain_annotation(hints[f.name]), _schema_field(f)) for f in changed]
    namespace = {"__module__": cls.__module__, "__doc__": cls.__doc__, "__config_class__": cls}
    schema = make_dataclass(cls.__name__, spec, bases=(cls,), namespace=namespace)
    # reachable as cls._OmegaConfSchema, so that pickle finds it (built configs stay picklable)
    schema.__qualname__ = f"{cls.__qualname__}._OmegaConfSchema"
    cls._OmegaConfSchema = schema
    return schema


def config_class(cfg: Any) -> type | None:
    """The config dataclass a built config was made from (None for an untyped config)."""
    schema = OmegaConf.get_type(cfg) if isinstance(cfg, DictConfig) else type(cfg)
    if schema is None or not is_dataclass(schema):
        return None
    return schema.__dict__.get("__config_class__", schema)


def structured(schema_cls: type) -> DictConfig:
    """The defaults of the config dataclass ``schema_cls`` as a typed DictConfig."""
    return _structured(schema_cls())


def _structured(obj: Any) -> DictConfig:
    """A config dataclass instance as a typed DictConfig (through its :func:`omegaconf_schema`)."""
    return OmegaConf.structured(_as_schema_instance(obj))


# ============================================================================ merging, with explained errors
def _valid_keys(schema: Any) -> list[str]:
    return sorted(f.name for f in fields(schema)) if is_dataclass(schema) else []


def _explain(err: OmegaConfBaseException, source: str, schema_cls: type | None, prefix: str = "") -> ConfigError:
    """A ConfigError naming the source, the dotted key and the valid keys of the section holding it."""
    key = getattr(err, "full_key", None) or getattr(err, "key", None) or "?"
    msg = str(err).splitlines()[0]
    node: Any = schema_cls
    for part in str(key).split(".")[:-1]:
        section = _section_class(_type_hints(node).get(part)) if is_dataclass(node) else None
        if section is None:
            break
        node = section
    valid = ", ".join(_valid_keys(node))
    return ConfigError(f"{source}: invalid config key or value '{prefix}{key}': {msg}. Valid keys here: {valid}")


def _as_omegaconf(part: Any) -> Any:
    if part is None:
        return OmegaConf.create({})
    if is_dataclass(part) and not isinstance(part, type):
        return _structured(part)
    return OmegaConf.create(part)


def _merged(cfg: DictConfig, part: Any, source: str, schema_cls: type | None, prefix: str = "") -> DictConfig:
    """A new config: ``part`` merged into ``cfg``; OmegaConf errors explained (source, key, valid keys)."""
    try:
        return OmegaConf.merge(cfg, _as_omegaconf(part))
    except OmegaConfBaseException as e:
        raise _explain(e, source, schema_cls, prefix) from None


def merge(schema_cls: type, parts: Sequence[tuple[str, Any]], *, prefix: str = "", base: Any = None) -> DictConfig:
    """The defaults of ``schema_cls`` (or the instance ``base`` of it) with each ``(source, mapping)`` of ``parts``
    merged in order.

    Unknown keys, wrong types and options outside their ``Literal`` values raise ConfigError naming the
    source that brought them and the key (``prefix`` + dotted key). An option written as a YAML boolean word
    (``off``, which YAML reads as false) is taken as that word when the option allows it.
    """
    cfg = structured(schema_cls) if base is None else _structured(base)
    for source, part in parts:
        cfg = _merged(cfg, part, source, schema_cls, prefix)
        if words := _yaml_bool_words(cfg, schema_cls):
            cfg = _merged(cfg, words, source, schema_cls, prefix)
        check_choices(cfg, schema_cls, source, prefix)
    return cfg


def build(
    schema_cls: type, yaml_cfg: Any = None, overrides: Sequence[str] = (), source: str = "config", *, prefix: str = ""
) -> DictConfig:
    """Build a config of the dataclass ``schema_cls``: its defaults, then ``yaml_cfg``, then ``key=value`` overrides.

    Args:
        schema_cls: the config dataclass.
        yaml_cfg: a mapping, DictConfig or ``schema_cls`` instance (None: the defaults).
        overrides: ``key=value`` strings (dotted keys).
        source: names ``yaml_cfg`` in error messages (a file path).
        prefix: prepended to keys in error messages (``model.`` for a method's model section).
    Returns:
        a typed DictConfig; every ``Literal`` option checked, then ``schema_cls.check(cfg, source)`` when the
        dataclass defines that classmethod (checks involving several keys).
    Raises:
        ConfigError: unknown key, wrong type, an option outside its allowed values, or a failed check.
    """
    cfg = merge(schema_cls, [(source, yaml_cfg), ("overrides", parse_overrides(overrides))], prefix=prefix)
    if callable(getattr(schema_cls, "check", None)):
        schema_cls.check(cfg, source)
    return cfg


def load(schema_cls: type, path: str | Path, overrides: Sequence[str] = ()) -> DictConfig:
    """:func:`build` from a YAML file (the file's path names it in error messages)."""
    return build(schema_cls, load_yaml(path), overrides, source=str(path))


def replace(cfg: DictConfig, changes: Mapping[str, Any], *, source: str = "replace") -> DictConfig:
    """A new config: ``cfg`` with the nested mapping ``changes`` merged and checked; ``cfg`` itself is unchanged."""
    schema_cls = config_class(cfg)
    new = _merged(cfg, dict(changes), source, schema_cls)
    if schema_cls is not None:
        check_choices(new, schema_cls, source)
    return new


# -- tagged unions: a section whose ``type`` key picks its dataclass ------------------------------------------


def variant_field(variants: Mapping[str, Any], default: str) -> Any:
    """A config field holding one of several section dataclasses, chosen by the section's ``type`` key.

    Args:
        variants: ``type`` name -> default instance of its section dataclass (whose ``type`` field is that name).
        default: the ``type`` used when the user writes no section.

    :func:`build_config` resolves such fields (see :func:`_merge_variants`); give the field the annotation ``Any``.
    """
    return field(default_factory=lambda: copy.deepcopy(variants[default]), metadata={"variants": dict(variants)})


def _pop_sections(name: str, parts: Sequence[tuple[str, Any]], prefix: str) -> list[tuple[str, DictConfig]]:
    """Remove key ``name`` from every part; its values, which must be mappings (sections)."""
    sections = []
    for source, part in parts:
        if not isinstance(part, DictConfig) or name not in part:
            continue
        value = part.pop(name)
        if not isinstance(value, DictConfig):
            raise ConfigError(
                f"{source}: '{prefix}{name}' is a section now, got {value!r}: write {prefix}{name}.type={value} "
                f"(YAML: {name}: {{type: {value}, ...}})"
            )
        sections.append((source, value))
    return sections


def _merge_variants(schema_cls, parts: Sequence[tuple[str, Any]], prefix: str) -> dict[str, DictConfig]:
    """Resolve the :func:`variant_field` fields of ``schema_cls`` (its top level): pop their sections out of
    ``parts`` (in place). A section given as a plain value (``model.sampler=occupancy``) is a ConfigError naming
    ``model.sampler.type``.

    Sections merge in order; one that names a different ``type`` than the current one starts again from that
    type's defaults (a section belongs to its type). Returns field name -> typed section.
    """
    resolved = {}
    for f in fields(schema_cls):
        variants = f.metadata.get("variants")
        if not variants:
            continue
        current = f.default_factory()
        chosen: list[tuple[str, Any]] = []
        for source, section in _pop_sections(f.name, parts, prefix):
            kind = section.get("type", current.type)
            if kind not in variants:
                raise ConfigError(f"{source}: {prefix}{f.name}.type must be one of {', '.join(variants)}, got {kind!r}")
            if kind != current.type:
                current, chosen = copy.deepcopy(variants[kind]), []
            chosen.append((source, section))
        resolved[f.name] = merge(type(current), chosen, prefix=f"{prefix}{f.name}.", base=current)
    return resolved


def _check_renamed(schema_cls, parts: Sequence[tuple[str, Any]], prefix: str) -> None:
    """ConfigError for keys a schema removed: its ``RENAMED_KEYS`` class attribute maps old key -> new key
    (optionally followed by a space and a hint, e.g. ``"sampler.levels (sampler.type: occupancy)"``)."""
    renamed = getattr(schema_cls, "RENAMED_KEYS", {})
    for source, part in parts:
        for key in part if isinstance(part, DictConfig) else ():
            if key in renamed:
                new, _, hint = renamed[key].partition(" ")
                raise ConfigError(f"{source}: '{prefix}{key}' was removed: use '{prefix}{new}' {hint}".rstrip())


def load_yaml(path: str | Path) -> DictConfig:
    """Parse a YAML file whose top level is a mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        cfg = OmegaConf.load(path)
    except Exception as e:  # yaml.YAMLError and friends
        raise ConfigError(f"{path}: cannot parse YAML: {e}") from None
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path}: top level must be a mapping of keys")
    return cfg


def parse_overrides(overrides: Sequence[str]) -> DictConfig:
    """``key=value`` strings (dotted keys, YAML values) -> a nested DictConfig."""
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"overrides must look like key=value, got: {', '.join(bad)}")
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except Exception as e:
        raise ConfigError(f"cannot parse overrides {list(overrides)}: {e}") from None


# ============================================================================ the scene-training config
DEVICE_PROFILE_KEY = "cpu"
"""Top-level key of a scene config holding the settings that replace the file's own on a machine without a GPU."""


def trains_on_cpu(device: str) -> bool:
    """Whether a run with ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) trains on the CPU."""
    if device == "auto":
        import torch

        return not torch.cuda.is_available()
    return device == "cpu"


def device_profile(user: DictConfig, ov: DictConfig, source: str) -> DictConfig:
    """Pop the ``cpu:`` section out of a scene config (and ``cpu.*`` overrides); return it when training on a CPU.

    A config sized for a GPU (big hash table, fine grid, large batches) crawls on a CPU; its ``cpu:`` section
    (same shape as the file: ``model:``, ``trainer:``, ...) holds the settings measured fastest there. It is
    merged after the file's own values and before ``key=value`` overrides when ``device`` (the override, else the
    file's, else ``auto``) resolves to the CPU; on a GPU it is ignored. Built configs never keep the section, so a
    run directory's ``config.yaml`` holds the values the run trained with.
    """
    sections = []
    for part_source, part in ((source, user), ("overrides", ov)):
        section = part.pop(DEVICE_PROFILE_KEY, None)
        if section is not None and not isinstance(section, DictConfig):
            raise ConfigError(
                f"{part_source}: '{DEVICE_PROFILE_KEY}' must be a section (model:, trainer:, ...), got {section!r}"
            )
        if section is not None:
            sections.append((part_source, section))
    device = str(ov.get("device", user.get("device", "auto")))
    if not trains_on_cpu(device):
        return OmegaConf.create({})
    profile = OmegaConf.create({})
    for part_source, section in sections:
        profile = _merged(profile, section, part_source, None, f"{DEVICE_PROFILE_KEY}.")
    return profile


def build_config(
    yaml_cfg: DictConfig | dict | None = None, overrides: Sequence[str] = (), source: str = "config"
) -> tuple[DictConfig, Any]:
    """Validate a config against :class:`TrainConfig` and the method's model config.

    A model config dataclass may define a classmethod ``resolve(model_cfg, cfg, source)`` returning the model
    config with values derived from the other sections (or raising ConfigError when they contradict them).

    A ``cpu:`` section of the file is merged over it when the run trains on a CPU (:func:`device_profile`).

    Returns:
        (full config as a DictConfig, the model config as a typed DictConfig of the method's dataclass).
    """
    from neural3d.methods.registry import get_method

    user = OmegaConf.create(yaml_cfg or {})
    ov = parse_overrides(overrides)
    profile = device_profile(user, ov, source)  # the file's ``cpu:`` section when training on a CPU, else {}
    psource = f"{source} (cpu:)"
    model_parts = [(source, user.pop("model", None) or {}), (psource, profile.pop("model", None) or {})]
    model_parts.append(("overrides", ov.pop("model", None) or {}))
    cfg = merge(TrainConfig, [(source, user), (psource, profile), ("overrides", ov)])
    method = get_method(cfg.method)
    _check_renamed(method.config_class, model_parts, "model.")
    sections = _merge_variants(method.config_class, model_parts, "model.")
    model_cfg = merge(method.config_class, model_parts, prefix="model.")
    for name, section in sections.items():
        model_cfg[name] = section
    if callable(getattr(method.config_class, "resolve", None)):  # values derived from the other sections
        model_cfg = method.config_class.resolve(model_cfg, cfg, source)
    cfg.model = model_cfg
    return cfg, model_cfg


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> tuple[DictConfig, Any]:
    """Load a YAML config file with ``key=value`` overrides (see :func:`build_config`)."""
    return build_config(load_yaml(path), overrides, source=str(path))


def to_yaml(cfg: DictConfig) -> str:
    """A config as YAML text (what a run directory's ``config.yaml`` holds)."""
    return OmegaConf.to_yaml(cfg)


# ============================================================================ builders and documentation
def config_kwargs(target: Callable[..., Any], section: Any, /, **explicit: Any) -> dict[str, Any]:
    """The keyword arguments :func:`instantiate` passes: ``section``'s fields named like ``target``'s parameters
    (plain Python values: a list field arrives as a list), then ``explicit`` (which wins)."""
    values = OmegaConf.to_container(section, resolve=True) if isinstance(section, DictConfig) else vars(section)
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    params = [n for n, p in inspect.signature(target).parameters.items() if p.kind in kinds]
    return {**{n: values[n] for n in params if n in values and n not in explicit}, **explicit}


def instantiate(target: Callable[..., Any], section: Any, /, **explicit: Any) -> Any:
    """Call ``target`` with the fields of the config ``section`` that name its keyword parameters.

    ``explicit`` keyword arguments are passed as given and win over fields of the same name. Fields that
    name no parameter are not passed (they configure something else: a sampler, the run). Values are plain
    Python (a list field arrives as a list). A ``**kwargs`` catch-all receives nothing from ``section``.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Section:
    ...     width: int = 8
    ...     n_samples: int = 4
    >>> instantiate(lambda *, width, depth=1: (width, depth), Section(), depth=3)
    (8, 3)
    """
    return target(**config_kwargs(target, section, **explicit))


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> the string literal written under it in the class body of dataclass ``cls``."""
    import ast
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):  # no source (a generated schema class)
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs = {}
    for stmt, nxt in zip(body, body[1:]):
        is_doc = isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and is_doc:
            docs[stmt.target.id] = inspect.cleandoc(nxt.value.value)
    return docs
