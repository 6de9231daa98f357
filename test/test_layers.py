"""The packages form one chain, launch -> legion_bringup -> legion_ros -> legion_kuka -> legion_core:
no package imports one above it, and each package.xml declares only packages below it. Inside a
package the modules form no circle either (checkpoint -> trainer -> checkpoint was one): each module
can be read, tested and moved with only what it imports.

Read from the source (ast), not by importing: an import inside a function counts as much as one at the
top (it is the same dependency, only deferred), and a test module counts for the package it tests (it
is installed and run with that package).
"""
from __future__ import annotations

import ast
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ('legion_core', 'legion_kuka', 'legion_ros', 'legion_bringup')  # lowest first


def imported_modules(path: Path, *, names: bool = False) -> list[tuple[int, str]]:
    """``(line, module)`` of every import in ``path``, and of ``importlib.import_module('<constant>')``.

    ``names``: also ``module.name`` for each name of ``from module import name``, which is a module
    where the name is a submodule (``from legion_core import checkpoint``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            if names:
                found += [(node.lineno, f'{node.module}.{alias.name}') for alias in node.names]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == 'import_module' and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value))
    return found


def upward_imports(package: str) -> list[str]:
    above = set(LAYERS[LAYERS.index(package) + 1:])
    folder = ROOT / 'src' / package
    problems = []
    for path in sorted(folder.rglob('*.py')):
        if path.is_symlink() or any(part.startswith('.') for part in path.relative_to(folder).parts):
            continue
        for line, module in imported_modules(path):
            if module.split('.')[0] in above:
                problems.append(f'{path.relative_to(ROOT)}:{line} imports {module}')
    return problems


@pytest.mark.parametrize('package', LAYERS)
def test_no_package_imports_one_above_it(package):
    assert not upward_imports(package), \
        f'{package} may import only {", ".join(LAYERS[:LAYERS.index(package)]) or "no LEGION package"}'


@pytest.mark.parametrize('package', LAYERS)
def test_package_xml_depends_only_downwards(package):
    manifest = ElementTree.parse(ROOT / 'src' / package / 'package.xml').getroot()
    depends = {element.text.strip() for element in manifest if element.tag.endswith('depend')}
    above = depends & set(LAYERS[LAYERS.index(package) + 1:])
    assert not above, f'{package}/package.xml depends on {sorted(above)}, a package above it'
    below = {module.split('.')[0] for path in (ROOT / 'src' / package / package).rglob('*.py')
             for _, module in imported_modules(path)} & set(LAYERS[:LAYERS.index(package)])
    assert below <= depends, f'{package} imports {sorted(below - depends)}, undeclared in its package.xml'


def test_the_check_sees_an_upward_import(tmp_path):
    """The walker finds imports at any depth, in every form, so the tests above can fail."""
    module = tmp_path / 'm.py'
    module.write_text('import os\n\ndef f():\n    from legion_bringup.launch_mixins import LegionMixin\n'
                      '    import importlib\n    importlib.import_module("legion_ros.graph")\n')
    assert [name for _, name in imported_modules(module)] == [
        'os', 'legion_bringup.launch_mixins', 'importlib', 'legion_ros.graph']


def module_imports(folder: Path, package: str) -> dict[str, dict[str, int]]:
    """Module -> {module of the same package it imports: line}, for the package's own modules under
    ``folder`` (a package's ``__init__`` is the package's name)."""
    files = {}
    for path in sorted((folder / package).rglob('*.py')):
        if path.is_symlink() or not path.resolve().is_relative_to((folder / package).resolve()):
            continue
        parts = path.relative_to(folder).with_suffix('').parts
        files['.'.join(parts[:-1] if parts[-1] == '__init__' else parts)] = path
    graph = {}
    for module, path in files.items():
        graph[module] = {}
        for line, name in imported_modules(path, names=True):
            if name in files and name != module:
                graph[module].setdefault(name, line)
    return graph


def circles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One import path round each circle (strongly connected set of modules), as ``a -> b -> a``."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(module):  # Tarjan's strongly connected components
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in graph[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while not component or component[-1] != module:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(_path_round(graph, set(component)))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def _path_round(graph: dict[str, dict[str, int]], component: set[str]) -> list[str]:
    """The shortest import path from the component's first module back to itself (breadth first)."""
    start = min(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        module = queue.pop(0)
        for target in sorted(graph[module]):
            if target == start:
                return [f'{a} -> {b} (line {graph[a][b]})' for a, b in
                        zip(paths[module], [*paths[module][1:], start], strict=True)]
            if target in component and target not in paths:
                paths[target] = [*paths[module], target]
                queue.append(target)
    raise AssertionError(f'no path round {component}')


@pytest.mark.parametrize('package', LAYERS)
def test_no_module_circle_inside_a_package(package):
    found = circles(module_imports(ROOT / 'src' / package, package))
    assert not found, 'modules import each other in a circle:\n' + '\n'.join('; '.join(c) for c in found)


# Modules that lie below the rest of their package, with the only package modules each may import:
# the checkpoint files are read and written without the trainer that fills them (which imports them to
# save) or the policy artefact made from them; frames are the pose conventions every part of the
# embodiment maps through, not real2sim's or the twin's.
FOUNDATIONS = {
    'legion_core.checkpoint': {'legion_core.atomic_file'},
    'legion_kuka.frames': {'legion_kuka.description'},
}


@pytest.mark.parametrize('module', sorted(FOUNDATIONS))
def test_foundation_modules_import_only_what_they_stand_on(module):
    package = module.split('.')[0]
    imports = module_imports(ROOT / 'src' / package, package)[module]
    beyond = {name: line for name, line in imports.items() if name not in FOUNDATIONS[module]}
    assert not beyond, f'{module} imports {beyond} (name: line); it may import only {FOUNDATIONS[module]}'


def test_the_check_sees_a_circle(tmp_path):
    """Circles through ``from package import module`` and through an import inside a function count."""
    package = tmp_path / 'pkg'
    package.mkdir()
    (package / '__init__.py').write_text('')
    (package / 'trainer.py').write_text('from pkg import checkpoint as ckpt\n')
    (package / 'checkpoint.py').write_text('import os\n\ndef resume():\n'
                                           '    from pkg.trainer import Trainer\n')
    (package / 'policy.py').write_text('from pkg.checkpoint import load\n')
    graph = module_imports(tmp_path, 'pkg')
    assert graph['pkg.policy'] == {'pkg.checkpoint': 1}
    assert circles(graph) == [['pkg.checkpoint -> pkg.trainer (line 4)',
                               'pkg.trainer -> pkg.checkpoint (line 1)']]
    (package / 'checkpoint.py').write_text('import os\n')
    assert circles(module_imports(tmp_path, 'pkg')) == []
