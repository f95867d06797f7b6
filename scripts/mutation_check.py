"""Mutation check of the algorithm modules (run outside CI): mutmut 2.5 mutates each module in a temporary git
worktree of HEAD (this checkout is never touched) and runs the tests that should catch a wrong algorithm; a mutant
no test kills "survives". Writes ``benchmarks/results/mutation/mutation.json`` (per module: mutants, killed,
surviving mutants as diffs) for ``docs/mutation.md``. Each module is checked against the hand-computed references
(``tests/test_hand_references.py``, seconds per mutant); the slower behavioural tests are not run per mutant.

    pip install mutmut==2.5.1
    python scripts/mutation_check.py [--only srdistill/core/maml.py] [--threads 2]
    python scripts/mutation_check.py --only A.py --threads 1 &    # two modules at once, sharing mutation.json
    python scripts/mutation_check.py --only B.py --threads 1 --modules-only
    python scripts/mutation_check.py --only srdistill/core/zero_shot.py --recheck --jobs 2 --threads 1
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

from srdistill.core.atomic_io import atomic_write_text
from srdistill.core.file_lock import FileLock

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / 'benchmarks' / 'results' / 'mutation' / 'mutation.json'
PYTEST = f'{sys.executable} -m pytest -x -q -p no:cacheprovider -p no:randomly'
# module -> the tests that must fail when its algorithm is wrong
TARGETS = {
    'srdistill/core/maml.py': 'tests/test_hand_references.py -k "maml or anneal"',
    'srdistill/core/zero_shot.py': 'tests/test_hand_references.py -k "mzsr or ensemble or dihedral"',
    'srdistill/core/zssr.py': 'tests/test_hand_references.py -k "zssr or back_proj"',
    'srdistill/core/class_balance.py': 'tests/test_hand_references.py -k "class_balanced or class_members"',
    'srdistill_plugin/samplers/class_balanced_sampler.py': 'tests/test_hand_references.py -k class_balanced',
    'srdistill/core/synthesis.py': 'tests/test_hand_references.py -k "guidance or sdedit or synthesis"',
    'srdistill/core/kernels.py': 'tests/test_hand_references_data.py -k kernel',
    'srdistill/core/degradations.py': 'tests/test_hand_references_data.py -k degradation',
    'srdistill/core/patch_selection.py': 'tests/test_hand_references_data.py -k patch',
    'srdistill/core/diffusion_losses.py': 'tests/test_hand_references_data.py -k diffusion',
    'srdistill_plugin/models/mzsr_model.py': 'tests/test_hand_references.py -k mzsr_model',
    'srdistill/core/matlab_resize.py': 'tests/test_hand_references_estimation.py -k matlab_resize',
    'srdistill/core/mzsr_net.py': 'tests/test_hand_references_estimation.py -k mzsr_net',
    'srdistill/core/official_psnr.py': 'tests/test_hand_references_estimation.py -k official_psnr',
    'srdistill/core/kernel_predictor.py': 'tests/test_hand_references_estimation.py -k predictor',
    'srdistill/core/kernel_estimation.py': 'tests/test_hand_references_estimation.py -k kernelgan',
    'srdistill/core/zero_shot_inputs.py': 'tests/test_hand_references_selection.py -k inputs',
    'srdistill/core/blur_synthesis.py': 'tests/test_hand_references_selection.py -k synthesis',
    'srdistill/core/representative.py': 'tests/test_hand_references_selection.py -k representative',
    'srdistill/core/set_diagnostics.py': 'tests/test_hand_references_selection.py -k diagnostics',
    'srdistill/core/features.py': 'tests/test_hand_references_selection.py -k "descriptor or kmeans or clip_encoder"',
    'srdistill_plugin/models/kernel_predictor_model.py': 'tests/test_hand_references_models.py -k kernel_model',
    'srdistill_plugin/models/diffusion_distill_model.py': 'tests/test_hand_references_models.py -k diffusion',
}


# the mistakes the tests must catch, written out (module, original, mutant, what it does)
NAMED = [
    ('srdistill/core/maml.py', 'p - lr * g', 'p + lr * g', 'MAML inner step with a flipped sign'),
    ('srdistill/core/zero_shot.py', 'tqdm(sizes[:steps],', 'tqdm([sizes[0]] * steps,',
     'MZSR adaptation with the first step size for every step'),
    ('srdistill/core/zssr.py', '            for _ in range(cfg.back_projection_iters):\n                out = ',
     '            for _ in range(0):\n                out = ', 'ZSSR inference without back-projection'),
    ('srdistill/core/zssr.py', "group['lr'] /= 10", "group['lr'] *= 10", 'ZSSR learning-rate drop inverted'),
    ('srdistill/core/class_balance.py', 'int(o * len(members[c]))', 'int(o * (len(members[c]) - 1))',
     "class-balanced sampler that never draws a class's last member"),
    ('srdistill_plugin/samplers/class_balanced_sampler.py', 'self.seed + self.epoch', 'self.seed',
     'class-balanced sampler that draws the same stream every epoch'),
]
STALL_SECONDS = 180  # no mutant judged for this long: mutmut has stalled (one takes seconds)
STATUSES = ('killed', 'survived', 'timeout', 'suspicious', 'skipped', 'untested')


def mutmut(work: Path, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'mutmut', *args], cwd=work, env=env, capture_output=True, text=True)


def mutant_diff(work: Path, mutant: int, env: dict) -> dict:
    diff = mutmut(work, 'show', str(mutant), env=env).stdout
    line = re.search(r'@@ -(\d+)', diff)
    changed = [text for text in diff.splitlines() if text[:1] in '+-' and not text.startswith(('+++', '---'))]
    return {'id': mutant, 'hunk_line': int(line.group(1)) if line else None, 'diff': changed}


@contextmanager
def head_worktree(threads: int) -> Iterator[tuple[Path, dict]]:
    """A temporary git worktree of HEAD and the environment to test it with. Bytecode is never cached there: a
    mutant of the same size as the source could otherwise run the original's cached bytecode."""
    work = Path(tempfile.mkdtemp(prefix='srdistill_mutation_'))
    subprocess.run(['git', 'worktree', 'add', '--detach', '-f', str(work), 'HEAD'], cwd=ROOT, check=True,
                   capture_output=True)
    try:
        yield work, {**os.environ, 'PYTHONPATH': str(work), 'OMP_NUM_THREADS': str(threads),
                     'PYTHONDONTWRITEBYTECODE': '1'}
    finally:
        subprocess.run(['git', 'worktree', 'remove', '--force', str(work)], cwd=ROOT, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def tested_count(work: Path) -> int:
    """Mutants mutmut has judged so far (its cache; 0 before it exists or while it is being written)."""
    try:
        with sqlite3.connect(work / '.mutmut-cache', timeout=5) as db:
            return db.execute("select count(*) from Mutant where status != 'untested'").fetchone()[0]
    except sqlite3.Error:
        return 0


def run_to_the_end(work: Path, env: dict, module: str, args: list[str]) -> int:
    """``mutmut <args>`` until it ends by itself; returns how often it was restarted. mutmut 2.5 sometimes stalls
    for good (a worker thread blocked on a full internal pipe, seen on kernels.py and patch_selection.py at no
    fixed mutant): when no mutant is judged for ``STALL_SECONDS`` it is killed and run again, and goes on from its
    cache."""
    restarts = 0
    with open(work / 'mutmut.log', 'ab') as log:
        while True:
            proc = subprocess.Popen([sys.executable, '-m', 'mutmut', *args], cwd=work, env=env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            judged, since = tested_count(work), time.time()
            while proc.poll() is None:
                time.sleep(10)
                now = tested_count(work)
                if now != judged:
                    judged, since = now, time.time()
                elif time.time() - since > STALL_SECONDS:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    # mutmut mutates the file in place: put the source back, or the next run mutates a mutant
                    subprocess.run(['git', 'checkout', '--', module], cwd=work, check=True, capture_output=True)
                    break
            else:
                return restarts
            restarts += 1
            print(f'  mutmut stalled at {judged} judged mutants; restarted ({restarts})', flush=True)


def check_module(module: str, tests: str, threads: int) -> dict:
    """Mutate ``module`` in a worktree of HEAD and run ``tests`` against each mutant."""
    with head_worktree(threads) as (work, env):
        start = time.time()
        quiet = f'sh -c {shlex.quote(f"{PYTEST} {tests} > /dev/null 2>&1")}'  # judged by the exit code alone
        restarts = run_to_the_end(work, env, module, ['run', '--paths-to-mutate', module, '--tests-dir', 'tests',
                                              '--runner', quiet, '--no-progress'])
        ids = {status: [int(i) for i in mutmut(work, 'result-ids', status, env=env).stdout.split()]
               for status in STATUSES}
        tested = sum(len(ids[s]) for s in ('killed', 'survived', 'timeout', 'suspicious'))
        if not tested:
            raise SystemExit(f'error: {module}: mutmut tested no mutant (is mutmut==2.5.1 installed? its log: '
                             f'{work / "mutmut.log"})')
        return {'module': module, 'tests': tests, **{s: len(v) for s, v in ids.items()}, 'restarts': restarts,
                'score': round((tested - len(ids['survived'])) / tested, 3) if tested else None,
                'minutes': round((time.time() - start) / 60, 1),
                'survivors': [mutant_diff(work, m, env) for m in ids['survived']]}


def check_named(threads: int) -> list[dict]:
    """Apply each of ``NAMED`` alone in a worktree of HEAD and run its module's tests: each must fail."""
    rows = []
    with head_worktree(threads) as (work, env):
        for module, original, mutant, what in NAMED:
            source = (work / module).read_text()
            if source.count(original) != 1:
                raise SystemExit(f'error: {module}: the text of "{what}" is not there once; update NAMED')
            (work / module).write_text(source.replace(original, mutant))
            proc = subprocess.run(f'{PYTEST} {TARGETS[module]}', shell=True, cwd=work, env=env, capture_output=True,
                                  text=True)
            (work / module).write_text(source)
            failed = re.findall(r'^FAILED (\S+)', proc.stdout, re.M)
            rows.append({'module': module, 'mutation': what, 'killed': proc.returncode != 0, 'failed_test': failed[:1]})
    return rows


def recheck_survivors(module: str, threads: int, jobs: int, ids: list[int] | None = None) -> list[dict]:
    """Apply each survivor of ``module``'s last run (``mutation.json``) alone to HEAD's source and run its tests
    again, ``jobs`` at a time (each in a worktree of its own): the tests written after the run must kill it (``rc``
    1, the first failing test named). ``ids``: only these survivors, merged into the last recheck's rows."""
    survivors = [m for m in json.loads(OUT.read_text())[module]['survivors'] if ids is None or m['id'] in ids]
    path = OUT.with_name(f'{Path(module).stem}_survivors_rechecked.json')
    earlier = [row for row in json.loads(path.read_text()) if row['id'] not in ids] if ids and path.is_file() else []

    def recheck(share: list[dict], work: Path, env: dict) -> list[dict]:
        rows = []
        source = (work / module).read_text()
        lines = source.splitlines(keepends=True)
        for m in share:
            before = [d[1:] + '\n' for d in m['diff'] if d[:1] == '-']
            after = [d[1:] + '\n' for d in m['diff'] if d[:1] == '+']
            start = next((i for i in range(max(m['hunk_line'] - 1, 0), len(lines)) if lines[i] == before[0]), None)
            if start is None and ''.join(before) not in source:  # the mutated code was deleted since the run
                rows.append({'id': m['id'], 'mutant': ' '.join(a.strip() for a in after) or '(removed)', 'rc': None,
                             'failed': [], 'gone': True})
                print(f"  #{m['id']}: its code is no longer in the source", flush=True)
                continue
            if start is None or lines[start:start + len(before)] != before:
                raise SystemExit(f'error: {module}: survivor #{m["id"]} no longer matches the source')
            (work / module).write_text(''.join(lines[:start] + after + lines[start + len(before):]))
            proc = subprocess.run(f'{PYTEST} {TARGETS[module]}', shell=True, cwd=work, env=env,
                                  capture_output=True, text=True)
            failed = re.findall(r'^(?:FAILED|ERROR) (\S+)', proc.stdout, re.M)
            if proc.returncode and not failed:  # e.g. the mutant breaks the import: no test ran (mutmut 2.5 counts
                failed = [f'(the tests could not run: exit code {proc.returncode})']  # only exit code 1 as killed)
            rows.append({'id': m['id'], 'mutant': ' '.join(a.strip() for a in after) or '(removed)',
                         'rc': proc.returncode, 'failed': failed[:1]})
            print(f"  #{m['id']}: {'killed by ' + failed[0] if failed else 'STILL ALIVE'}", flush=True)
        return rows

    with ExitStack() as stack:  # the worktrees made one after the other (git locks its worktree list)
        trees = [stack.enter_context(head_worktree(threads)) for _ in range(jobs)]
        with ThreadPoolExecutor(jobs) as pool:
            shares = list(pool.map(recheck, [survivors[k::jobs] for k in range(jobs)], *zip(*trees)))
    return sorted(earlier + [row for share in shares for row in share], key=lambda row: row['id'])


def render(results: dict) -> str:
    """The results as the study's README (every figure from ``mutation.json``)."""
    modules = {m: r for m, r in results.items() if m != 'named'}
    rows = ['| module | mutants tested | killed | survived | timed out | score | minutes | threads |',
            '|---|---|---|---|---|---|---|---|']
    for module, r in modules.items():
        tested = r['killed'] + r['survived'] + r['timeout'] + r['suspicious']
        rows.append(f"| `{module}` | {tested} | {r['killed']} | {r['survived']} | {r['timeout']} | "
                    f"{r['score']:.1%} | {r['minutes']} | {r['threads']} |")
    lines = ['# Mutation check', '',
             'mutmut 2.5.1 on the CPU (torch threads per module in the table), each mutant against '
             'the tests named in `mutation.json` (`python scripts/mutation_check.py`; what survives and why: '
             '`docs/mutation.md`). Score = killed or timed out / tested.', '', *rows, '']
    if 'named' in results:
        lines += ['## The mistakes written out', '', '| module | mutation | killed by |', '|---|---|---|']
        lines += [f"| `{r['module']}` | {r['mutation']} | "
                  f"{'`' + r['failed_test'][0] + '`' if r['killed'] else 'NOT KILLED'} |" for r in results['named']]
        lines.append('')
    lines += ['## Surviving mutants', '',
              'Where a module\'s survivors were rechecked (`--recheck`: each applied alone, against the tests as they '
              'are now), each line says whether a test written after the run kills it.', '']
    for module, r in modules.items():
        rechecked = OUT.with_name(f'{Path(module).stem}_survivors_rechecked.json')
        verdict = {row['id']: row for row in json.loads(rechecked.read_text())} if rechecked.is_file() else {}
        if verdict:
            gone = sum(bool(row.get('gone')) for row in verdict.values())
            alive = sum(not row['failed'] and not row.get('gone') for row in verdict.values())
            lines.insert(lines.index('## The mistakes written out') if 'named' in results else len(lines),
                         f'`{module}`, its {len(verdict)} survivors rechecked: {len(verdict) - alive - gone} now '
                         f'killed, {alive} alive' + (f', {gone} in code deleted since' if gone else '')
                         + f' (`{rechecked.name}`).\n')
        for m in r['survivors']:
            before = ' '.join(d[1:].strip() for d in m['diff'] if d[:1] == '-' and d[1:].strip())
            after = ' '.join(d[1:].strip() for d in m['diff'] if d[:1] == '+' and d[1:].strip())
            row = verdict.get(m['id'])
            since = '' if row is None else (' — its code deleted since' if row.get('gone') else
                                            f" — killed since by `{row['failed'][0].split('::')[-1]}`"
                                            if row['failed'] else ' — still alive')
            lines.append(f"- `{module}` #{m['id']} (line {m['hunk_line']}): `{before}` → "
                         + (f'`{after}`' if after else '(removed)') + since)
    return '\n'.join(lines) + '\n'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--only', nargs='*', help='modules to check (default: all of TARGETS)')
    parser.add_argument('--threads', type=int, default=2, help='torch threads of the test runs (default 2)')
    parser.add_argument('--named-only', action='store_true', help='only the mistakes written out in NAMED')
    parser.add_argument('--modules-only', action='store_true', help='skip the mistakes written out in NAMED')
    parser.add_argument('--recheck', action='store_true',
                        help='apply each survivor of the last run alone and run the tests again (tests written since)')
    parser.add_argument('--jobs', type=int, default=1, help='--recheck: survivors checked at once (default 1)')
    parser.add_argument('--ids', type=int, nargs='+', help='--recheck: only these survivors (the others kept)')
    args = parser.parse_args()
    modules = args.only or list(TARGETS)
    unknown = [m for m in modules if m not in TARGETS]
    if unknown:
        sys.exit(f'error: --only {unknown[0]}: not one of {list(TARGETS)}')
    if args.recheck:
        for module in modules:
            atomic_write_text(OUT.with_name(f'{Path(module).stem}_survivors_rechecked.json'),
                              json.dumps(recheck_survivors(module, args.threads, args.jobs, args.ids), indent=1))
        atomic_write_text(OUT.with_name('README.md'), render(json.loads(OUT.read_text())))
        return
    if not args.modules_only:
        store('named', check_named(args.threads))
        for row in json.loads(OUT.read_text())['named']:
            print(f"  {row['mutation']}: {'killed by ' + row['failed_test'][0] if row['killed'] else 'NOT KILLED'}")
    for module in [] if args.named_only else modules:
        print(f'mutating {module} ...', flush=True)
        result = {**check_module(module, TARGETS[module], args.threads), 'threads': args.threads, 'mutmut': '2.5.1',
                  'device': 'cpu'}
        print(f"  {result['killed']} killed, {result['survived']} survived, {result['timeout']} timed out "
              f"({result['minutes']} min)", flush=True)
        store(module, result)


def store(key: str, value) -> None:
    """Set one entry of ``mutation.json`` and re-render the README, under a lock: runs of other modules may share
    the file."""
    with FileLock(Path(tempfile.gettempdir()) / 'srdistill_mutation_json.lock'):
        results = json.loads(OUT.read_text()) if OUT.is_file() else {}
        results[key] = value
        atomic_write_text(OUT, json.dumps(results, indent=1))
        atomic_write_text(OUT.with_name('README.md'), render(results))


if __name__ == '__main__':
    main()
