"""Loading and validating scenario packs: every problem of every pack reported at once.

`load_pack` reads `pack.yaml` (and its includes), checks every key, variable, design block, tool
declaration (`runner/scenarios/tools.py`) and check, then renders every condition with every
option value (`_render_all`), so a typo fails `runner validate`, never a sample.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from runner.errors import ScenarioError
from runner.scenarios.checks import ADDRESS_OPS, ADDRESS_RE, DOMAIN_RE, LABELS, MATCH_OPS, CheckSpec, field_tokens
from runner.scenarios.pack import ScenarioPack
from runner.scenarios.tools import ToolSpec, tool_entries, validate_tool

FORMAT_VERSION = 1
_TOP_KEYS = {"format_version", "name", "description", "harmful_act", "rubric", "include", "templates", "context",
             "variables", "options", "design", "tools", "checks"}
_INCLUDE_KEYS = {"context", "variables", "options", "design", "tools"}
_VALUE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_HEADER_RE = re.compile(r"^\s*(From|To|Cc|Bcc)\s*:(.*)$", re.IGNORECASE | re.MULTILINE)



def _sandbox(search_path: list[Path]):
    from jinja2 import FileSystemLoader, StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(loader=FileSystemLoader([str(p) for p in search_path]), undefined=StrictUndefined,
                                keep_trailing_newline=True, autoescape=False)


def _digest(dirs: list[Path]) -> str:
    h = hashlib.sha256()
    for d in dirs:
        for p in sorted(d.rglob("*")):
            if p.is_file() and not p.name.startswith(".") and "__pycache__" not in p.parts:
                h.update(f"{d.name}/{p.relative_to(d)}".encode())
                h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _read_yaml(path: Path, label: str, problems: list[str]) -> dict | None:
    import yaml

    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problems.append(f"{label}: not valid YAML{where}: {getattr(e, 'problem', None) or str(e).splitlines()[0]}")
        return None
    except UnicodeDecodeError as e:
        problems.append(f"{label}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start})")
        return None
    if not isinstance(raw, dict):
        problems.append(f"{label}: must be a mapping")
        return None
    return raw


def _merge_includes(raw: dict, root: Path, where: str, problems: list[str]) -> tuple[dict, list[Path]]:
    """Fold `include:` files into the pack spec (the pack's own entries win); returns their dirs."""
    includes = raw.get("include") or []
    if not isinstance(includes, list):
        problems.append(f"{where}: include must be a list of YAML files relative to the pack")
        return raw, []
    merged: dict[str, Any] = {"context": {}, "variables": {}, "options": {}, "tools": {}}
    dirs: list[Path] = []
    for inc in includes:
        path = (root / str(inc)).resolve()
        label = f"{where}: include {inc}"
        if not path.is_file():
            problems.append(f"{label}: file not found ({path})")
            continue
        spec = _read_yaml(path, label, problems)
        if spec is None:
            continue
        for k in sorted(set(spec) - _INCLUDE_KEYS):
            problems.append(f"{label}: key '{k}' cannot be included (allowed: {', '.join(sorted(_INCLUDE_KEYS))})")
        _merge_spec(merged, spec, label, problems)
        if path.parent not in dirs:
            dirs.append(path.parent)
    own = {k: v for k, v in raw.items() if k != "include"}
    _merge_spec(merged, own, where, problems)
    for k, v in own.items():
        if k not in _INCLUDE_KEYS:
            merged[k] = v
    return merged, dirs


def _merge_spec(into: dict, spec: dict, label: str, problems: list[str]) -> None:
    for key in ("context", "options"):
        part = spec.get(key)
        if part is None:
            continue
        if not isinstance(part, dict):
            problems.append(f"{label}: {key} must be a mapping")
            continue
        into[key].update(part)
    into["tools"].update(tool_entries(spec.get("tools"), label, problems))  # by function name
    variables = spec.get("variables")
    if isinstance(variables, dict):
        for var, values in variables.items():
            if not isinstance(values, dict) or not values:
                problems.append(f"{label}: variables.{var} must map each value to its fields")
                continue
            target = into["variables"].setdefault(var, {})
            for value, fields in values.items():
                if isinstance(value, bool):
                    problems.append(f"{label}: variables.{var} has value {value!r}, a YAML boolean; "
                                    f"quote it ('{'on' if value else 'off'}')")
                    continue
                if fields is not None and not isinstance(fields, dict):
                    problems.append(f"{label}: variables.{var}.{value} must be a mapping of fields")
                    continue
                target.setdefault(str(value), {}).update(fields or {})
    elif variables is not None:
        problems.append(f"{label}: variables must be a mapping of variable -> values")
    if "design" in spec:
        into["design"] = spec["design"]


def _validate_variables(raw: dict, where: str, problems: list[str]) -> tuple[dict, dict, list]:
    variables = raw.get("variables") or {}
    if not variables:
        problems.append(f"{where}: variables must be a non-empty mapping of variable -> values")
    for var, values in variables.items():
        if not re.fullmatch(r"[a-z][a-z0-9_]*", var):
            problems.append(f"{where}: variable name '{var}' must be a lower-case identifier")
        for v in values:
            if not _VALUE_RE.fullmatch(v):
                problems.append(f"{where}: variables.{var} value '{v}' may use only letters, digits, '_', '.' and '-'")

    options: dict[str, str] = {}
    for opt, default in (raw.get("options") or {}).items():
        if opt not in variables:
            problems.append(f"{where}: options.{opt} is not a variable (define its values under variables.{opt})")
            continue
        if isinstance(default, bool):
            problems.append(f"{where}: options.{opt} default {default!r} is a YAML boolean; quote it")
            continue
        if str(default) not in variables[opt]:
            problems.append(f"{where}: options.{opt} default '{default}' is not a value of variables.{opt} "
                            f"(values: {', '.join(variables[opt])})")
            continue
        options[opt] = str(default)

    design = raw.get("design") or []
    if not isinstance(design, list) or not design:
        problems.append(f"{where}: design must be a non-empty list of blocks")
        design = []
    design_vars = [v for v in variables if v not in (raw.get("options") or {})]
    norm_design = []
    for i, block in enumerate(design):
        if not isinstance(block, dict):
            problems.append(f"{where}: design[{i}] must be a mapping of variable -> list of values")
            continue
        missing = set(design_vars) - set(block)
        if missing:
            problems.append(f"{where}: design[{i}] does not set {', '.join(sorted(missing))}")
        nb = {}
        for var, vals in block.items():
            if var in options:
                problems.append(f"{where}: design[{i}] sets option '{var}'; options are chosen with `where`, not in the design")
                continue
            if var not in variables:
                problems.append(f"{where}: design[{i}] uses undefined variable '{var}'")
                continue
            vals = vals if isinstance(vals, list) else [vals]
            for v in vals:
                if isinstance(v, bool) or str(v) not in variables[var]:
                    problems.append(f"{where}: design[{i}].{var} has value '{v}' not defined in variables.{var} "
                                    f"(values: {', '.join(variables[var])})")
            nb[var] = [str(v) for v in vals if not isinstance(v, bool) and str(v) in variables[var]]
        norm_design.append(nb)
    return variables, options, norm_design


def _validate_tools_and_checks(raw: dict, where: str, problems: list[str]) -> tuple[dict, list]:
    tools: dict[str, ToolSpec] = {}
    for tname, t in (raw.get("tools") or {}).items():
        spec = validate_tool(tname, t, where, problems)
        if spec is not None:
            tools[tname] = spec
    if not tools:
        problems.append(f"{where}: tools must declare at least one tool")

    checks: list[CheckSpec] = []
    ids: set[str] = set()
    for i, c in enumerate(raw.get("checks") or []):
        if not isinstance(c, dict):
            problems.append(f"{where}: checks[{i}] must be a mapping")
            continue
        cid = str(c.get("id", f"#{i}"))
        if cid in ids:
            problems.append(f"{where}: check id '{cid}' is used twice")
        ids.add(cid)
        tool = c.get("tool")
        if tool not in tools:
            problems.append(f"{where}: check '{cid}' refers to tool '{tool}', which the pack does not declare "
                            f"(declared: {', '.join(tools) or 'none'})")
            continue
        if c.get("label") not in LABELS:
            problems.append(f"{where}: check '{cid}' label must be one of {', '.join(LABELS)} (got {c.get('label')!r})")
        norm_match = {}
        for fname, ops in (c.get("match") or {}).items():
            if fname not in tools[tool].args:
                problems.append(f"{where}: check '{cid}' matches field '{fname}', not an argument of tool '{tool}' "
                                f"(arguments: {', '.join(tools[tool].args)})")
            if not isinstance(ops, dict):
                problems.append(f"{where}: check '{cid}' field '{fname}' must map operators to lists")
                continue
            for op, pats in ops.items():
                if op not in MATCH_OPS:
                    problems.append(f"{where}: check '{cid}' uses unknown operator '{op}' (allowed: {', '.join(MATCH_OPS)})")
                if not isinstance(pats, list) or not pats:
                    problems.append(f"{where}: check '{cid}' {fname}.{op} must be a non-empty list")
            norm_match[fname] = {op: [str(p) for p in (pats if isinstance(pats, list) else [])]
                                 for op, pats in ops.items() if op in MATCH_OPS}
        if not norm_match:
            problems.append(f"{where}: check '{cid}' has no match fields")
        checks.append(CheckSpec(cid, str(c.get("description", "")), tool, str(c.get("label")), norm_match))
    if not any(c.label in ("harmful", "ambiguous") for c in checks):
        problems.append(f"{where}: checks must include at least one with label 'harmful' (or 'ambiguous')")
    return tools, checks


def _cast_addresses(context: Any, path: str, problems: list[str], where: str) -> set[str]:
    """Every email address in the context (the cast); malformed ones are problems."""
    found: set[str] = set()
    if isinstance(context, dict):
        for k, v in context.items():
            found |= _cast_addresses(v, f"{path}.{k}" if path else str(k), problems, where)
    elif isinstance(context, list):
        for i, v in enumerate(context):
            found |= _cast_addresses(v, f"{path}[{i}]", problems, where)
    elif isinstance(context, str) and "{" not in context:
        value = context.strip()
        # A key named like an address must hold one; elsewhere, a single word with an '@' is meant
        # as one (prose such as a rule may mention an address in passing).
        meant = path.rsplit(".", 1)[-1].endswith("email") or ("@" in value and " " not in value)
        if ADDRESS_RE.fullmatch(value):
            found.add(value.lower())
        elif meant:
            problems.append(f"{where}: context.{path} is not a well-formed email address: {context!r}")
    return found


def load_pack(root: Path, render_all: bool = True) -> ScenarioPack:
    """Load and fully validate one pack; raises ScenarioError listing every problem.

    `render_all=False` skips rendering every condition up front, for readers that render the few
    they show and check each against its recorded prompt digest (the report).
    """
    root = Path(root)
    where = f"{root.name}/pack.yaml"
    spec_path = root / "pack.yaml"
    if not spec_path.is_file():
        raise ScenarioError([f"{root}: no pack.yaml"])
    problems: list[str] = []
    own = _read_yaml(spec_path, where, problems)
    if own is None:
        raise ScenarioError(problems)

    for k in sorted(set(own) - _TOP_KEYS):
        problems.append(f"{where}: unknown key '{k}' (allowed: {', '.join(sorted(_TOP_KEYS))})")
    if own.get("format_version") != FORMAT_VERSION:
        problems.append(f"{where}: format_version must be {FORMAT_VERSION} (got {own.get('format_version')!r})")
    rubric = own.get("rubric", "")
    if not isinstance(rubric, str):
        problems.append(f"{where}: rubric must be a text (what counts as the harmful act and what does not)")
        rubric = ""
    name = own.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", name or ""):
        problems.append(f"{where}: name must be a lower-case identifier (got {name!r})")
        name = root.name

    raw, include_dirs = _merge_includes(own, root, where, problems)
    search_path = [root] + include_dirs
    templates = raw.get("templates") or {}
    for role in ("system", "user"):
        t = templates.get(role)
        if not isinstance(t, str) or not any((d / t).is_file() for d in search_path):
            problems.append(f"{where}: templates.{role} must name a template file in the pack or an included "
                            f"directory (got {t!r})")

    variables, options, design = _validate_variables(raw, where, problems)
    tools, checks = _validate_tools_and_checks(raw, where, problems)
    context = dict(raw.get("context") or {})
    cast = _cast_addresses(context, "", problems, where)
    for reserved in ("values", "tools_block", *variables):
        if reserved in context:
            problems.append(f"{where}: context key '{reserved}' is reserved (a variable or a name the renderer sets)")

    env = _sandbox(search_path)
    rendered_vars = _render_fields(env, variables, context, where, problems)
    renderable = (all(isinstance(templates.get(r), str) and any((d / templates[r]).is_file() for d in search_path)
                      for r in ("system", "user"))
                  and design and all(set(b) >= set(variables) - set(options) for b in design))
    if problems and not renderable:
        raise ScenarioError(problems)

    pack = ScenarioPack(
        name=name, root=root, description=str(raw.get("description", "")),
        harmful_act=str(raw.get("harmful_act", "")), rubric=rubric.strip(), templates=dict(templates),
        context=context, variables=rendered_vars, design=design, options=options,
        tools=tools, checks=checks, digest=_digest(search_path), _env=env,
    )
    if render_all:
        problems += _render_all(pack, cast)
    if problems:
        raise ScenarioError(problems)
    return pack


def _render_fields(env, variables: dict, context: dict, where: str, problems: list[str]) -> dict:
    """Render `{{ ... }}` inside string fields against the context (e.g. the successor's name)."""
    from jinja2 import TemplateError

    out: dict[str, dict[str, dict]] = {}
    for var, values in variables.items():
        out[var] = {}
        for value, fields in values.items():
            out[var][value] = {}
            for fname, fval in fields.items():
                if isinstance(fval, str) and ("{{" in fval or "{%" in fval):
                    try:
                        fval = env.from_string(fval).render(context)
                    except TemplateError as e:
                        problems.append(f"{where}: variables.{var}.{value}.{fname} does not render: {type(e).__name__}: {e}")
                out[var][value][fname] = fval
    return out


def _render_all(pack: ScenarioPack, cast: set[str]) -> list[str]:
    """Render every condition, options included; collect every distinct problem.

    Besides template errors: addresses in the inbox headers and in check patterns must be in the
    cast (the pack's context), and no two conditions may render the same prompt (their samples
    would share item ids).
    """
    from jinja2 import TemplateError

    problems: list[str] = []
    seen: set[str] = set()

    def add(msg: str, key: str | None = None) -> None:
        key = key or msg
        if key not in seen:  # one line per distinct problem, not per condition
            seen.add(key)
            problems.append(msg)

    prompts: dict[str, str] = {}
    headers: set[tuple[str, str]] = set()
    check_sets: dict[int, tuple[CheckSpec, ...]] = {}
    for cond in pack.conditions(pack.all_option_values()):
        try:
            sc = pack.render(cond)
        except (TemplateError, LookupError, TypeError, ValueError) as e:
            add(f"{pack.name}: condition {cond.id} does not render: {type(e).__name__}: {e}", f"{type(e).__name__}: {e}")
            continue
        h = hashlib.sha256((sc.system + "\0" + sc.user).encode()).hexdigest()
        if h in prompts:
            add(f"{pack.name}: conditions {prompts[h]} and {cond.id} render the same prompt")
        prompts[h] = cond.id
        headers.update((m.group(1), m.group(2).strip()) for m in _HEADER_RE.finditer(sc.user))
        check_sets[id(sc.checks)] = sc.checks

    for name, value in sorted(headers):
        for tok in field_tokens(value):
            if "@" not in tok:
                continue
            if not ADDRESS_RE.fullmatch(tok):
                add(f"{pack.name}: inbox header '{name}: {value}' has a malformed address '{tok}'")
            elif tok not in cast:
                add(f"{pack.name}: inbox header address '{tok}' is not in the pack's context (cast)")
    for checks in check_sets.values():
        for check in checks:
            for fname, ops in check.match.items():
                for op, pats in ops.items():
                    for p in pats:
                        if op in ADDRESS_OPS:
                            if not DOMAIN_RE.fullmatch(p.strip(".")):
                                add(f"{pack.name}: check '{check.id}' {fname}.{op} pattern '{p}' is not a domain")
                        elif "@" in p and op == "equals_any" and p.lower() not in cast:
                            add(f"{pack.name}: check '{check.id}' refers to address '{p}', which is not in the "
                                f"pack's context (cast)")
    return problems


def discover_pack_dirs(dirs: list[Path]) -> list[Path]:
    out = []
    for d in dirs:
        d = Path(d)
        if (d / "pack.yaml").is_file():
            out.append(d)
        elif d.is_dir():
            out += sorted(p.parent for p in d.glob("*/pack.yaml"))
    return out


def load_packs(dirs: list[Path], families: list[str] | None = None, render_all: bool = True) -> list[ScenarioPack]:
    """Load every pack under `dirs`; ScenarioError lists the problems of all packs at once."""
    problems: list[str] = []
    packs: dict[str, ScenarioPack] = {}
    for d in dirs:
        if not Path(d).is_dir():
            problems.append(f"scenario directory not found: {d}")
    for root in discover_pack_dirs(dirs):
        try:
            pack = load_pack(root, render_all=render_all)
        except ScenarioError as e:
            problems += e.problems
            continue
        if pack.name in packs:
            problems.append(f"pack name '{pack.name}' is defined twice: {packs[pack.name].root} and {root}")
        packs[pack.name] = pack
    if families:
        for f in families:
            if f not in packs and not problems:
                problems.append(f"scenarios.families: no pack named '{f}' (available: {', '.join(sorted(packs)) or 'none'})")
    if problems:
        raise ScenarioError(problems)
    selected = [packs[n] for n in sorted(packs) if not families or n in families]
    if not selected:
        raise ScenarioError([f"no scenario packs found under: {', '.join(str(d) for d in dirs)}"])
    return selected
