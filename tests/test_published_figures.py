"""Every figure of the README's headline table is in the results file its row links to (the file is the source)."""
import re

from .conftest import ROOT

DECIMAL = re.compile(r'(?<![\d.])\d+\.\d+(?![\d.])')


def headline_rows() -> list[tuple[str, str, str]]:
    """``(what, ours, linked file)`` of each row of the README's headline table."""
    text = (ROOT / 'README.md').read_text()
    table = text.split('## What it does, measured')[1].split('\n\n![')[0]
    rows = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip('|').split('|')]
        if len(cells) == 4 and cells[0] not in ('what', '---'):
            link = re.search(r'\]\(([^)#]+)\)', cells[3])
            rows.append((cells[0], cells[1], link.group(1) if link else ''))
    return rows


def test_every_headline_figure_is_in_the_file_its_row_links_to():
    rows = headline_rows()
    assert 5 <= len(rows) <= 10
    missing = []
    for what, ours, link in rows:
        source = (ROOT / link).read_text()
        missing += [f'{what}: {figure} not in {link}' for figure in DECIMAL.findall(ours) if figure not in source]
    assert missing == []


def test_the_readme_reads_in_one_screen():
    """A newcomer's README: at most 900 words (``wc -w``), the two set-up commands first."""
    text = (ROOT / 'README.md').read_text()
    assert len(text.split()) <= 900
    first_block = text.split('```bash\n')[1].split('```')[0]
    commands = [line for line in first_block.splitlines() if line and not line.startswith('#')]
    assert commands == ['pip install -r requirements.txt -e . && python tools/demo.py',
                        'pip install -r requirements.txt -e . && python -m pytest -q -n 2']


def differences(text: str) -> set[str]:
    """Every difference of two figures of ``text``, as written to two decimals (a row may give a gain)."""
    figures = {float(f) for f in DECIMAL.findall(text)}
    return {f'{abs(a - b):.2f}' for a in figures for b in figures}


def test_every_figure_of_the_results_table_is_in_or_follows_from_the_files_its_row_links_to():
    text = (ROOT / 'docs' / 'results.md').read_text()
    rows = [line for line in text.splitlines() if line.startswith('| ') and not line.startswith('| what')]
    assert len(rows) >= 20
    missing = []
    for line in rows:
        what, figure, files = [c.strip() for c in line.strip('|').split('|')][:3]
        links = re.findall(r'\]\(([^)#]+)', files)
        assert links, f'{what}: no file linked'
        source = ''.join((ROOT / 'docs' / link).resolve().read_text() for link in links)
        derived = differences(source)
        missing += [f'{what[:60]}: {f}' for f in DECIMAL.findall(figure) if f not in source and f not in derived]
    assert missing == []


def test_the_demo_figures_in_the_docs_are_those_of_the_kept_fresh_clone_run():
    """docs/experiment.md quotes the demo's time and PSNRs from the run kept in benchmarks/results/demo_x4 (its run
    record and report), and the README's time is that run's, rounded up to 5 minutes."""
    measured = (ROOT / 'docs' / 'experiment.md').read_text().split('## The demo')[1].split('Measured from a fresh')[1]
    measured = measured.split('At 600 iterations')[0]
    kept = ROOT / 'benchmarks' / 'results' / 'demo_x4'
    source = (kept / 'README.md').read_text() + (kept / 'report.md').read_text()
    figures = DECIMAL.findall(measured)
    assert len(figures) >= 6 and [f for f in figures if f not in source] == []
    minutes = re.search(r'wall time \*\*(\d+) min (\d+) s\*\*', source)
    assert f'{minutes[1]} min {minutes[2]} s' in measured
    readme = (ROOT / 'README.md').read_text()
    readme_minutes = int(re.search(r'embedded photographs; ~(\d+) min on 2 CPU cores', readme)[1])
    assert readme_minutes == -(-(int(minutes[1]) + 1) // 5) * 5
    best = [line for line in (kept / 'report.md').read_text().splitlines() if line.startswith('| ') and '**' in line]
    for arm, figure in re.findall(r'(full pool|random_real|coverage|distilled|selected_real) (\d+\.\d+)', measured):
        row = next(line for line in best if line.startswith(f"| {arm.replace('full pool', 'full_pool')} |"))
        assert f'**{figure}**' in row, arm
