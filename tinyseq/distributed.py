"""A communicator for data-parallel training: one process by default, MPI under mpiexec.

    comm = get_comm()            # under `mpiexec -n N`: rank 0..N-1 of N; else rank 0 of 1
    comm.allreduce_(flat)        # in place: the sum over ranks of one flat buffer (P,)
    value = comm.bcast(value)    # rank 0's Python object on every rank

The single-process communicator does no communication and never imports mpi4py;
:func:`get_comm` imports ``mpi4py`` only when the process runs under an MPI launcher
(see :func:`under_mpiexec`) or when asked (``distributed=True``). Under MPI an
uncaught exception on any rank prints ``rank R: <error>`` and calls ``MPI_Abort``, so
the whole job ends within seconds instead of the other ranks waiting forever in the
next collective (a rank killed by a signal is ended by the launcher: mpich's mpiexec
stops the job).

Device arrays (CuPy) are summed with NCCL (``cupy.cuda.nccl``, reached through
:mod:`tinyseq.backend`'s array module) when it is there and not turned off with
``TINYSEQ_NCCL=0`` (NCCL wants one GPU per rank), else through CUDA-aware MPI when the
environment says ``TINYSEQ_CUDA_AWARE_MPI=1``, else staged through host memory;
:func:`use_local_gpu` gives each rank of a machine its own GPU. That path is written
for GPUs but has not been run on GPU hardware yet: the ``gpu`` tests check it.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, NoReturn, TypeVar

import numpy as np

from . import backend

__all__ = ["Communicator", "MPICommunicator", "get_comm", "under_mpiexec", "on_root",
           "local_rank", "use_local_gpu", "LAUNCHER_SIZE_VARIABLES"]

T = TypeVar("T")

# Set by MPI launchers in every process they start, to the number of processes:
# MPICH's Hydra mpiexec, Intel MPI and Slurm's srun --mpi=pmi2 (PMI_SIZE), Open MPI's
# mpirun (OMPI_COMM_WORLD_SIZE), MVAPICH2 (MV2_COMM_WORLD_SIZE). Slurm's own
# SLURM_NTASKS is not among them: it is set for plain (non-MPI) job steps too.
LAUNCHER_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def under_mpiexec(environ: Mapping[str, str] | None = None) -> bool:
    """True when an MPI launcher started this process as one of more than one."""
    env = os.environ if environ is None else environ
    for name in LAUNCHER_SIZE_VARIABLES:
        value = env.get(name, "")
        if value.isdigit() and int(value) > 1:
            return True
    return False


class Communicator:
    """One process: rank 0 of 1; every collective returns its input."""

    rank = 0
    size = 1

    def allreduce_(self, buf: Any) -> Any:
        """Sum a flat buffer (P,) over ranks, in place; returns ``buf``."""
        return buf

    def bcast(self, obj: T, root: int = 0) -> T:
        """``root``'s Python object, on every rank."""
        return obj

    def broadcast_(self, buf: Any, root: int = 0) -> Any:
        """Overwrite a flat buffer (P,) with ``root``'s, in place; returns ``buf``."""
        return buf

    def gather(self, obj: T, root: int = 0) -> list[T] | None:
        """Every rank's ``obj`` (arrays or Python objects) in rank order on ``root``; None elsewhere."""
        return [obj]

    def allgather(self, obj: T) -> list[T]:
        """Every rank's ``obj`` in rank order, on every rank."""
        return [obj]

    def barrier(self) -> None:
        """Wait until every rank is here."""

    def abort(self, message: str, code: int = 1) -> NoReturn:
        """Print ``rank R: message`` on stderr and end the whole job with ``code``."""
        sys.stderr.write(f"rank {self.rank}: {message}\n")
        sys.stderr.flush()
        raise SystemExit(code)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, size={self.size})"


class MPICommunicator(Communicator):
    """The processes of ``MPI.COMM_WORLD`` (mpi4py)."""

    def __init__(self, mpi: Any) -> None:
        self.MPI = mpi
        self.comm = mpi.COMM_WORLD
        self.rank = int(self.comm.Get_rank())
        self.size = int(self.comm.Get_size())
        self._nccl: Any = None

    def allreduce_(self, buf: Any) -> Any:
        if isinstance(buf, np.ndarray):
            self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
            return buf
        return self._allreduce_device(buf)

    def _allreduce_device(self, buf: Any) -> Any:
        # untested on GPU hardware: NCCL first, then CUDA-aware MPI if declared, then host
        nccl = self._nccl_comm()
        if nccl is not None:
            cupy = backend.get_device("cuda").xp
            module = importlib.import_module(cupy.__name__ + ".cuda.nccl")
            kinds = {np.dtype(np.float32): module.NCCL_FLOAT32, np.dtype(np.float64): module.NCCL_FLOAT64}
            nccl.allReduce(buf.data.ptr, buf.data.ptr, buf.size, kinds[np.dtype(buf.dtype)],
                           module.NCCL_SUM, cupy.cuda.get_current_stream().ptr)
            return buf
        if os.environ.get("TINYSEQ_CUDA_AWARE_MPI") == "1":
            backend.get_device("cuda").xp.cuda.get_current_stream().synchronize()
            self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
            return buf
        host = backend.to_numpy(buf)
        self.comm.Allreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
        buf[...] = backend.get_device("cuda").xp.asarray(host)
        return buf

    def _nccl_comm(self) -> Any:
        """A NCCL communicator over the ranks (one GPU each), built once; None without NCCL."""
        if self._nccl is False or os.environ.get("TINYSEQ_NCCL") == "0":
            return None
        if self._nccl is None:
            try:
                nccl = importlib.import_module(backend.get_device("cuda").xp.__name__ + ".cuda.nccl")
                uid = self.bcast(nccl.get_unique_id() if self.rank == 0 else None)
                self._nccl = nccl.NcclCommunicator(self.size, uid, self.rank)
            except (ImportError, AttributeError, RuntimeError):
                self._nccl = False
                return None
        return self._nccl

    def bcast(self, obj: T, root: int = 0) -> T:
        return self.comm.bcast(obj, root=root)  # type: ignore[no-any-return]

    def broadcast_(self, buf: Any, root: int = 0) -> Any:
        host = backend.to_numpy(buf)
        self.comm.Bcast(host, root=root)
        if host is not buf:
            buf[...] = backend.get_device("cuda").xp.asarray(host)
        return buf

    def gather(self, obj: T, root: int = 0) -> list[T] | None:
        return self.comm.gather(obj, root=root)  # type: ignore[no-any-return]

    def allgather(self, obj: T) -> list[T]:
        return self.comm.allgather(obj)  # type: ignore[no-any-return]

    def barrier(self) -> None:
        self.comm.Barrier()

    def abort(self, message: str, code: int = 1) -> NoReturn:
        sys.stderr.write(f"rank {self.rank}: {message}\n")
        sys.stderr.flush()
        # the launcher stops forwarding output once the job is aborted: give it the lines first
        time.sleep(_FLUSH_SECONDS)
        self.comm.Abort(code)
        raise SystemExit(code)  # not reached: Abort ends the process


def _abort_on_error(comm: MPICommunicator) -> None:
    """An excepthook that ends every rank when one fails (not only the failing one)."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        # the one line first: should the launcher cut the output short, it is the one to keep
        sys.stderr.write(f"rank {comm.rank}: {kind.__name__}: {value}\n")
        sys.stderr.flush()
        previous(kind, value, tb)
        comm.abort(f"{kind.__name__}: {value} (ending all {comm.size} processes)")

    sys.excepthook = hook


# the rank among the processes of this machine: MPICH's Hydra, Open MPI, Slurm
_LOCAL_RANK_VARIABLES = ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID")


def local_rank(environ: Mapping[str, str] | None = None) -> int:
    """This process's rank among the ranks on its machine (0 when no launcher says)."""
    env = os.environ if environ is None else environ
    for name in _LOCAL_RANK_VARIABLES:
        if env.get(name, "").isdigit():
            return int(env[name])
    return 0


def use_local_gpu() -> int:
    """Make GPU ``local_rank() % count`` the current one (one GPU per rank); returns it.

    Call it before anything is allocated on the GPU.
    """
    cupy = backend.get_device("cuda").xp
    index = local_rank() % max(1, int(cupy.cuda.runtime.getDeviceCount()))
    cupy.cuda.Device(index).use()
    return index


_COMM: Communicator | None = None
_FLUSH_SECONDS = 0.3


def get_comm(distributed: bool | None = None) -> Communicator:
    """The communicator of this process (built once).

    distributed: None detects an MPI launcher (:func:`under_mpiexec`); True asks for
    MPI (an ImportError naming ``tinyseq[mpi]`` without mpi4py); False: one process.
    """
    global _COMM
    if distributed is False:
        return Communicator()
    if _COMM is not None:
        return _COMM
    if distributed is None and not under_mpiexec():
        return Communicator()
    try:
        mpi = importlib.import_module("mpi4py.MPI")
    except ImportError as err:
        raise ImportError(
            "distributed training needs mpi4py and an MPI (pip install 'tinyseq[mpi]', which "
            f"brings mpi4py and mpich's mpiexec): {err}") from err
    comm = MPICommunicator(mpi)
    if comm.size > 1:
        _abort_on_error(comm)
    _COMM = comm
    return comm


def on_root(comm: Communicator, fn: Callable[[], T]) -> T:
    """``fn()`` run on rank 0 alone; its result, or the exception it raised, on every rank.

    For file-system decisions only one process may take (checking or creating a run
    directory): the other ranks raise the same error instead of racing rank 0.
    """
    if comm.size == 1:
        return fn()
    outcome: tuple[bool, Any] = (True, None)
    if comm.rank == 0:
        try:
            outcome = (True, fn())
        except Exception as err:  # sent to the other ranks, raised everywhere
            outcome = (False, err)
    ok, value = comm.bcast(outcome)
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]
