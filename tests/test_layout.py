"""The package's layout: one folder per job, imports only downwards, no import circle (read from the source)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / 'srdistill_plugin'  # the BasicSR / MMagic side
CORE_PACKAGE = ROOT / 'srdistill'  # the framework-free side: it never imports the plugin or a training framework
# Each folder's floor (in either package): a module may import its own floor and the floors below it, never one above.
FLOORS = {'core': 0, 'utils': 0, 'compat': 0, 'cli': 0, 'metrics': 1, 'archs': 1, 'samplers': 1, 'data': 2,
          'models': 2, 'engine': 3, 'distill': 4, 'zero_shot': 4, 'experiment': 5, 'commands': 6, 'mm': 6,
          '__init__': 6}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def imports_of(path: Path) -> set[str]:
    """Every ``srdistill_plugin`` module imported anywhere in the file (functions included), relative ones resolved."""
    package = module_name(path) if path.name == '__init__.py' else module_name(path).rsplit('.', 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                base = '.'.join(package.split('.')[:len(package.split('.')) - node.level + 1] + ([base] if base else []))
            found |= {base} | {f'{base}.{a.name}' for a in node.names}
    return {name for name in found if name.split('.')[0] in ('srdistill', 'srdistill_plugin')}


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for root in (CORE_PACKAGE, PACKAGE) for p in root.rglob('*.py')}
    return {name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()}


def floor(module: str) -> int:
    parts = module.split('.')
    return FLOORS[parts[1] if len(parts) > 1 else '__init__']


def test_every_folder_has_a_floor():
    assert {m.split('.')[1] for m in graph() if '.' in m} <= set(FLOORS)


def test_no_module_imports_a_higher_floor():
    upward = sorted(f'{a} -> {b}' for a, deps in graph().items() for b in deps
                    if floor(b) > floor(a))
    assert upward == []


def test_no_import_circle():
    edges = graph()
    state: dict[str, int] = {}
    circles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                circles.append(' -> '.join(trail[trail.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    assert circles == []


def test_the_framework_free_package_never_imports_the_plugin_or_a_framework():
    plugin = sorted(f'{a} -> {b}' for a, deps in graph().items() if a.split('.')[0] == 'srdistill' for b in deps
                    if b.split('.')[0] == 'srdistill_plugin')
    assert plugin == []
    frameworks = ('basicsr', 'mmengine', 'mmagic', 'mmcv', 'torchvision')
    direct = sorted(f'{path.relative_to(ROOT)}: {name}' for path in CORE_PACKAGE.rglob('*.py')
                    for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, (ast.Import, ast.ImportFrom))
                    for name in ([a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ''])
                    if name.split('.')[0] in frameworks)
    assert direct == []


def test_the_zero_shot_command_imports_no_training_stack():
    import subprocess
    import sys

    code = ('import sys, srdistill.zero_shot.cli; print(sorted(m for m in ("basicsr", "torchvision", "diffusers", '
            '"transformers", "mmengine", "srdistill_plugin") if m in sys.modules))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == '[]'


def test_a_zero_shot_run_on_png_files_never_imports_opencv(tmp_path):
    """The command reads, estimates, adapts and writes without OpenCV (0.1 s of its start-up)."""
    import subprocess
    import sys

    import numpy as np
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 44, 3), dtype=np.uint8)).save(tmp_path / 'lr.png')
    code = ('import sys; from srdistill.zero_shot.inference import main; '
            f'main([{str(tmp_path / "lr.png")!r}, "--output", {str(tmp_path / "out")!r}, "--steps", "1"]); '
            'print("cv2" in sys.modules)')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert proc.stdout.strip().splitlines()[-1] == 'False'
    assert (tmp_path / 'out' / 'lr_MZSR1.png').is_file() and (tmp_path / 'out' / 'kernels' / 'lr_kernel.png').is_file()


def test_the_report_reads_results_and_never_imports_the_runner():
    assert 'srdistill_plugin.experiment.runner' not in graph()['srdistill_plugin.experiment.report']


def test_results_files_name_no_machine_paths():
    """Results files are read on other clones: paths in them are relative to the repository."""
    import re

    absolute = re.compile(r'(^|[\s"\'(=`])/([\w.-]+/){2,}')
    results = sorted((PACKAGE.parent / 'benchmarks' / 'results').rglob('*'))
    offending = [f'{path.relative_to(PACKAGE.parent)}:{n}' for path in results
                 if path.suffix in ('.md', '.json', '.html', '.txt')
                 for n, line in enumerate(path.read_text().splitlines(), 1) if absolute.search(line)]
    assert offending == []


def test_every_name_the_scripts_import_from_the_project_exists():
    """The benchmarks, scripts and tools run rarely: a name they import that the library renamed fails here, not in a
    user's hour-long run."""
    import importlib
    import importlib.util

    root = PACKAGE.parent
    missing = []
    for path in sorted([*root.glob('benchmarks/*.py'), *root.glob('scripts/*.py'), *root.glob('tools/*.py')]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and not node.level and (node.module or '').split('.')[0] in (
                    'srdistill_plugin', 'srdistill', 'benchmarks'):
                module = importlib.import_module(node.module)
                missing += [f'{path.relative_to(root)}: {node.module}.{a.name}' for a in node.names
                            if not hasattr(module, a.name) and importlib.util.find_spec(f'{node.module}.{a.name}') is None]
    assert missing == []


def test_results_paths_are_made_relative_only_where_an_absolute_path_starts():
    from benchmarks.common import ROOT, repo_relative

    text = f'saved in benchmarks/work/blind_sr, {ROOT}/benchmarks/work/x and `{ROOT.parent}/shared/data` ({ROOT}/a)'
    assert repo_relative(text) == 'saved in benchmarks/work/blind_sr, benchmarks/work/x and `../shared/data` (a)'
