"""Tools for checking ops and cells: float64 gradient checks and the cell conformance kit."""

from .cellcheck import CHECKS, CellCheckError, CellCheckReport, CheckResult, check_cell
from .gradcheck import GradcheckError, gradcheck, numerical_grad

__all__ = [
    "gradcheck",
    "numerical_grad",
    "GradcheckError",
    "check_cell",
    "CHECKS",
    "CellCheckError",
    "CellCheckReport",
    "CheckResult",
]
