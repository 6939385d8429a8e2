"""One-parameter goal-seek: the affine secant shortcut, brentq, and bisection on a grid.

The search for the parameter value where the objective metric equals its target, used by
``livecalc.solver.optimize`` for algorithm "brentq". Every evaluation goes through ``Problem.at``.
"""

from __future__ import annotations

from scipy import optimize as sopt

from livecalc.solver._optproblem import Found, Outcome, Point, Problem


def goal_seek(problem: Problem) -> Outcome:
    """brentq on one parameter for the value where the objective metric equals the target."""
    cfg, p = problem.cfg, problem.cfg.parameters[0]
    if p.type == "discrete":
        return _goal_seek_grid(problem)
    metric, lo, hi = cfg.objective.metric, *p.bounds

    def gap(x: float) -> float:
        g = problem.at([x]).value - problem.target
        if abs(g) <= problem.tolerance:
            raise Found(x)
        return g

    try:
        g_lo, g_hi = gap(lo), gap(hi)
    except Found as found:
        return Outcome(problem.at([found.args[0]]), True, "the target is hit at a bound")
    if g_lo * g_hi > 0:
        return Outcome(
            problem.at([lo] if abs(g_lo) < abs(g_hi) else [hi]),
            False,
            f"the target {problem.target:g} is not bracketed: {metric} - target is {g_lo:g} at "
            f"the lower bound and {g_hi:g} at the upper bound; widen "
            "optimization.parameters[0].bounds",
        )
    # The secant through the bounds is exact when the metric is affine in the parameter.
    x_secant = lo - g_lo * (hi - lo) / (g_hi - g_lo)
    problem.iterations = 1
    if cfg.affine is True:
        return Outcome(
            _interpolated(problem, x_secant),
            True,
            "affine (declared): solved exactly from two evaluations, not verified",
            affine=True,
            verified=False,
        )
    if cfg.affine == "auto":
        try:
            gap(x_secant)
        except Found:
            return Outcome(
                problem.at([x_secant]),
                True,
                "affine: the secant through the bounds hits the target (verified by a third "
                "evaluation)",
                affine=True,
            )
    try:
        root, info = sopt.brentq(
            gap,
            lo,
            hi,
            xtol=1e-14 * max(1.0, hi - lo),
            maxiter=cfg.max_iterations,
            full_output=True,
            disp=False,
        )
    except Found as found:
        # Past the two bounds, each brentq iteration (and the secant check) is one evaluation.
        problem.iterations = problem.evaluations - 2
        return Outcome(problem.at([found.args[0]]), True, "brentq: the target is hit")
    problem.iterations = problem.evaluations - 2
    point = problem.at([root])
    miss = abs(point.value - problem.target)
    if miss <= problem.tolerance:
        return Outcome(point, True, f"brentq: {info.flag}")
    return Outcome(
        point,
        False,
        f"brentq: {info.flag}; |{metric} - target| = {miss:g} exceeds the "
        f"tolerance {problem.tolerance:g} (does the metric jump near the root?)",
    )


def _interpolated(problem: Problem, x: float) -> Point:
    """The point at ``x`` with its metrics interpolated between the bounds, not evaluated."""
    lo, hi = problem.cfg.parameters[0].bounds
    a, b = problem.at([lo]), problem.at([hi])
    w = (x - lo) / (hi - lo)
    metrics = {k: (1 - w) * a.metrics[k] + w * b.metrics[k] for k in a.metrics}
    value = metrics[problem.cfg.objective.metric]
    return Point((x,), metrics, value, problem.score(value), 0.0, True)


def _goal_seek_grid(problem: Problem) -> Outcome:
    """Goal-seek on a discrete parameter: bisection over grid indices, then the closer end."""
    p = problem.cfg.parameters[0]

    def gap(k: int) -> float:
        return problem.at([p.on_grid(k)]).value - problem.target

    a, b = 0, p.grid_max
    if gap(a) * gap(b) > 0:
        k = a if abs(gap(a)) < abs(gap(b)) else b
        return Outcome(
            problem.at([p.on_grid(k)]),
            False,
            f"the target {problem.target:g} is not bracketed on the grid of "
            "optimization.parameters[0]; widen its bounds",
        )
    if problem.cfg.affine != False:  # noqa: E712 - "auto" or True: try the secant first
        # Under affinity the grid points either side of the secant's root bracket the target.
        k = int((b - a) * gap(a) / (gap(a) - gap(b))) if gap(a) != gap(b) else a
        k = min(max(k, a), b - 1)
        problem.iterations = 1
        if gap(k) * gap(k + 1) <= 0:
            a, b = k, k + 1
    while b - a > 1 and problem.iterations < problem.cfg.max_iterations:
        problem.iterations += 1
        mid = (a + b) // 2
        a, b = (a, mid) if gap(a) * gap(mid) <= 0 else (mid, b)
    closer = min((a, b), key=lambda k: abs(gap(k)))
    if b - a <= 1:
        return Outcome(
            problem.at([p.on_grid(closer)]),
            True,
            "grid goal-seek: the target lies between adjacent grid points; the closer is taken",
        )
    return Outcome(
        problem.at([p.on_grid(closer)]),
        False,
        f"max_iterations={problem.cfg.max_iterations} reached before the grid bracket closed",
    )
