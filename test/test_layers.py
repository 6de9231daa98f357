"""The packages form one chain, launch -> legion_bringup -> legion_ros -> legion_kuka -> legion_core:
no package imports one above it, and each package.xml declares only packages below it.

Read from the source (ast), not by importing: an import inside a function counts as much as one at the
top, and a test module counts for the package it tests (it is installed and run with that package).
"""
from __future__ import annotations

import ast
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ('legion_core', 'legion_kuka', 'legion_ros', 'legion_bringup')  # lowest first


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every import in ``path``, and of ``importlib.import_module('<constant>')``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
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
