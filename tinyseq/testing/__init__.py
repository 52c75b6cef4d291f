"""Tools for checking ops and cells: float64 gradient checks (and the cell kit)."""

from .gradcheck import GradcheckError, gradcheck, numerical_grad

__all__ = ["gradcheck", "numerical_grad", "GradcheckError"]
