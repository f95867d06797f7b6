"""Fault injection for the fault-tolerance tests, in every Python process started with this folder on PYTHONPATH
(child processes included) while ``SRDISTILL_FAULT`` is set:

    SRDISTILL_FAULT="kill:torch.save:3:.state"    SIGKILL on the 3rd torch.save to a path containing '.state'
                                                  (after writing half of its bytes)
    SRDISTILL_FAULT="kill:lmdb.put:5:"            SIGKILL on the 5th LmdbMaker.put (any LMDB)
    SRDISTILL_FAULT="kill:replace:1:select.json"  SIGKILL just before the 1st rename onto a name containing it
    SRDISTILL_FAULT="fail:torch.save:1:net_g:28"  the 1st matching call and every later one raise OSError(28 =
                                                  ENOSPC) instead (a full disk stays full)
"""
import io
import os
import signal

SPEC = os.environ.get('SRDISTILL_FAULT')


def install(action: str, what: str, nth: int, match: str, err: int) -> None:
    calls = [0]

    def fault(path) -> bool:
        """True when this call is the one to break (and it is a kill: never returns)."""
        if match not in os.fspath(path):
            return False
        calls[0] += 1
        if calls[0] < nth or (calls[0] > nth and action == 'kill'):
            return False
        if action == 'kill':
            os.kill(os.getpid(), signal.SIGKILL)
        raise OSError(err, os.strerror(err), os.fspath(path))

    if what == 'replace':
        original_replace = os.replace

        def replace(src, dst, *args, **kwargs):
            fault(dst)
            return original_replace(src, dst, *args, **kwargs)
        os.replace = replace
    elif what == 'torch.save':
        import torch
        original_save = torch.save

        def save(obj, f, *args, **kwargs):
            if isinstance(f, (str, os.PathLike)) and match in os.fspath(f) and calls[0] + 1 == nth and action == 'kill':
                buffer = io.BytesIO()
                original_save(obj, buffer)
                with open(f, 'wb') as out:  # half a file, then the kill
                    out.write(buffer.getvalue()[:len(buffer.getvalue()) // 2])
            if isinstance(f, (str, os.PathLike)):
                fault(f)
            return original_save(obj, f, *args, **kwargs)
        torch.save = save
    elif what == 'lmdb.put':
        from srdistill.core.lmdb_io import LmdbMaker  # BasicSR's writer, as the project loads it
        original_put = LmdbMaker.put

        def put(self, img_byte, key, img_shape):
            fault(self.lmdb_path + '/' + key)
            return original_put(self, img_byte, key, img_shape)
        LmdbMaker.put = put
    else:
        raise ValueError(f'SRDISTILL_FAULT: unknown target {what!r}')


if SPEC:
    parts = SPEC.split(':')
    install(parts[0], parts[1], int(parts[2]), parts[3] if len(parts) > 3 else '',
            int(parts[4]) if len(parts) > 4 else 0)
