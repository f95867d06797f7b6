"""``benchmarks/mzsr_starts.py``: the starts' table is read from their results files cell by cell, the targets of
the shipped start judged at their edges, and a file lacking a cell is refused in one line."""
import json

from .conftest import run_tool

SETS, KERNELS = ('Set5', 'Set14'), ('gd0.2', 'gd2.0', 'gdani', 'gb1.3')


def write_summary(path, base: float, networks: dict | None = None, zssr: bool = False) -> dict:
    """A results file whose every figure is distinct: base + 0.1 * (cell index) + 0.01 * (figure index)."""
    summary = {}
    for i, key in enumerate(f'{s}/{k}' for s in SETS for k in KERNELS):
        summary[key] = {name: base + 0.1 * i + 0.01 * j
                        for j, name in enumerate(('bicubic', 'mzsr0', 'mzsr1', 'mzsr10'))}
        if zssr:
            summary[key]['zssr_final'] = 40 + i
    path.write_text(json.dumps({'summary': summary, 'networks': networks or {}}))
    return summary


def test_cells_equal_their_files_and_targets_are_judged_at_the_edge(tmp_path):
    own = write_summary(tmp_path / 'own.json', 34.0, {'pretrained': {}, 'direct': {'iteration': 1300},
                                                      'bicubic': {'iteration': 500}})
    own['Set5/gd2.0'].update(mzsr1=34.90, mzsr10=35.24)  # one target met exactly, one missed by 0.01
    own['Set14/gdani']['mzsr10'] = own['Set14/gdani']['bicubic']  # not above bicubic
    (tmp_path / 'own.json').write_text(json.dumps({'summary': own, 'networks': {'direct': {'iteration': 1300}}}))
    official = write_summary(tmp_path / 'official.json', 30.0)
    write_summary(tmp_path / 'zssr.json', 20.0, zssr=True)
    (tmp_path / 'blind.json').write_text(json.dumps({'blind': {'all/own': {
        'images': 19, 'bicubic': 26.74, 'mzsr_default': 30.2, 'mzsr_true': 30.5, 'mzsr_wrong': 29.7,
        'sensitivity_true_minus_default': 0.3}}}))
    run_tool('-m', 'benchmarks.mzsr_starts', '--start', f'own={tmp_path / "own.json"}',
             '--start', f'official={tmp_path / "official.json"}', '--zssr', str(tmp_path / 'zssr.json'),
             '--blind', str(tmp_path / 'blind.json'), '--output', str(tmp_path / 'out' / 'starts'))
    text = (tmp_path / 'out' / 'starts.md').read_text()
    rows = [line for line in text.splitlines() if line.startswith(('| Set5 |', '| Set14 |'))]
    assert len(rows) == 8
    row = rows[1].split(' | ')  # Set5 gd2.0: bicubic, the paper, own, official, ZSSR
    assert row[2:] == [f'{own["Set5/gd2.0"]["bicubic"]:.2f}', '35.20 / 36.05', '34.11 / 34.90 / 35.24',
                       '30.11 / 30.12 / 30.13', '41.00 |']
    assert '- Set5/gd2.0 MZSR(1) 34.90 ≥ 34.90: met' in text
    assert '- Set5/gd2.0 MZSR(10) 35.24 ≥ 35.25: missed by 0.01 dB (official: 30.13)\n' in text
    assert '- MZSR(10) above bicubic on all four kernels of Set5 and Set14: missed on Set14/gdani' in text
    assert '- blind benchmark, true − default kernel +0.30 ≥ +0.30 dB: met' in text
    assert 'meta-transfer checkpoints: direct 1,300)' in text
    data = json.loads((tmp_path / 'out' / 'starts.json').read_text())
    assert data['starts']['official'] == official and data['zssr_final']['Set14/gb1.3'] == 47


def test_a_file_without_a_cell_is_refused_in_one_line(tmp_path):
    summary = write_summary(tmp_path / 'own.json', 34.0)
    del summary['Set14/gb1.3']
    (tmp_path / 'own.json').write_text(json.dumps({'summary': summary}))
    write_summary(tmp_path / 'zssr.json', 20.0, zssr=True)
    proc = run_tool('-m', 'benchmarks.mzsr_starts', '--start', f'own={tmp_path / "own.json"}',
                    '--zssr', str(tmp_path / 'zssr.json'), '--output', str(tmp_path / 'out' / 'starts'), check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == (
        f'error: {tmp_path / "own.json"}: no figures for Set14/gb1.3')
    assert not (tmp_path / 'out').exists()


def test_curves_are_drawn_by_meta_iteration_with_each_runs_best(tmp_path):
    write_summary(tmp_path / 'own.json', 34.0)
    write_summary(tmp_path / 'zssr.json', 20.0, zssr=True)
    first = {'direct': {'chosen': 200, 'choice_curve': {'100': 27.0, '200': 27.5}}}
    (tmp_path / 'first.json').write_text(json.dumps({'summary': {}, 'networks': first}))
    more = {'direct': {'chosen': 100, 'choice_curve': {'100': 27.25, '200': 27.125}}}
    (tmp_path / 'more.json').write_text(json.dumps({'summary': {}, 'networks': more}))
    run_tool('-m', 'benchmarks.mzsr_starts', '--start', f'own={tmp_path / "own.json"}',
             '--zssr', str(tmp_path / 'zssr.json'), '--curve', f'first={tmp_path / "first.json"}',
             '--curve', f'more={tmp_path / "more.json"}@200', '--output', str(tmp_path / 'out' / 'starts'))
    lines = (tmp_path / 'out' / 'starts.md').read_text().splitlines()
    table = lines[lines.index('| meta-iteration | first | more |') + 2:]
    # the continued run's 100 and 200 are meta-iterations 300 and 400; 27.125 rounds to 27.12 (half to even)
    assert table[:5] == ['| 100 | 27.00 | – |', '| 200 | **27.50** | – |', '| 300 | – | **27.25** |',
                         '| 400 | – | 27.12 |', '']
    intro = next(line for line in lines if line.startswith("The checkpoint rule's figure"))
    # (the paths as the results file writes them: relative to the repository where they can be)
    assert 'first.json`, its best 27.50 dB at 200); more (`' in intro
    assert intro.endswith('more.json`, its best 27.25 dB at 300).')
    assert (tmp_path / 'out' / 'starts_curve.png').stat().st_size > 0
    data = json.loads((tmp_path / 'out' / 'starts.json').read_text())
    assert data['curves']['more']['best'] == 300 and data['curves']['more']['curve'] == {'300': 27.25, '400': 27.125}
    bad = run_tool('-m', 'benchmarks.mzsr_starts', '--start', f'own={tmp_path / "own.json"}',
                   '--zssr', str(tmp_path / 'zssr.json'), '--curve', f'first={tmp_path / "own.json"}',
                   '--output', str(tmp_path / 'bad' / 'starts'), check=False)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1] == (
        f'error: {tmp_path / "own.json"}: arm direct has no held-out curve of the checkpoint rule')
