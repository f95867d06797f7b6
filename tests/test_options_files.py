"""Option files inherit (``_base_``), merged as MMEngine merges configs; the shipped studies state only what differs
from their base, and each resolves to the options its runs were made with."""
import json
import re

import pytest

from srdistill.core.errors import SRDistillError
from srdistill.core.options_file import read_options

from .conftest import ROOT


def write(folder, name: str, text: str):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_file_merges_over_its_bases_key_by_key(tmp_path):
    write(tmp_path, 'bases/a.yml', 'x: 1\nnet: {type: EDSR, feat: 32, block: 4}\nlist: [1, 2]\nkeep: {a: 1}\n')
    write(tmp_path, 'bases/b.yml', '_base_: a.yml\nnet: {feat: 64}\ny: 2\n')  # relative to its own folder
    top = write(tmp_path, 'top.yml', '_base_: [bases/b.yml]\nlist: [3]\nkeep: {_delete_: true, b: 2}\nx: 5\n')
    assert read_options(top) == {'x': 5, 'net': {'type': 'EDSR', 'feat': 64, 'block': 4}, 'list': [3],
                                 'keep': {'b': 2}, 'y': 2}


@pytest.mark.parametrize('files, message', [
    ({'top.yml': '_base_: missing.yml\n'}, 'top.yml: option _base_: {d}/missing.yml does not exist'),
    ({'top.yml': '_base_: {a: 1}\n'}, "top.yml: option _base_: expected a file or a list of files, got {'a': 1}"),
    ({'top.yml': '_base_: b.yml\n', 'b.yml': '_base_: top.yml\n'}, 'top.yml: _base_ includes itself'),
    ({'top.yml': '_base_: b.yml\n', 'b.yml': 'x: [1\n'}, 'b.yml:2:1: YAML syntax error'),
])
def test_a_bad_base_is_one_line_naming_the_file(tmp_path, files, message):
    for name, text in files.items():
        write(tmp_path, name, text)
    with pytest.raises(SRDistillError) as err:
        read_options(tmp_path / 'top.yml')
    assert message.replace('{d}', str(tmp_path)) in str(err.value) and '\n' not in str(err.value)


def test_the_shipped_studies_resolve_to_the_options_their_runs_recorded():
    """Every study's stored run settings (benchmarks/results/distill_<study>/runs/*.settings.json) record its
    students and each run's SR training (the experiment's, with a custom arm's recipe over it): the options resolved
    through _base_ give the same."""
    checked = 0
    for path in sorted((ROOT / 'options' / 'report').glob('sunhays80_x4*.yml')):
        exp = read_options(path)
        runs = ROOT / 'benchmarks' / 'results' / f'distill_{exp["name"]}' / 'runs'
        for stored in sorted(runs.glob('*.settings.json')):
            settings = json.loads(stored.read_text())
            student, rest = stored.name.split('_', 1)
            arm = re.sub(r'(_[0-9.]+pct)?_s\d+\.settings\.json$', '', rest)
            recipe = ((exp.get('custom_arms') or {}).get(arm) or {}).get('sr_train') or {}
            assert settings['network_g'] == exp['students'][student]['network_g'], stored
            assert settings['sr_train'] == {k: v for k, v in {**exp['sr_train'], **recipe}.items()
                                            if k != 'max_iter' and not (k == 'augment' and not v)}, stored
            checked += 1
    assert checked >= 50  # 57 runs of 10 studies
