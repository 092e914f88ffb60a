"""MATH answers as Transformer²'s official code scores them: ``\\boxed{}`` extraction, normalisation, equivalence.

Rules read in SakanaAI/self-adaptive-llms (commit 03a41ae), ``evaluation/fishfarm/fishfarm/tasks/competation_math.py``
(``last_boxed_only_string``, ``remove_boxed``, ``extract_ans``, ``_strip_string`` and helpers, ``math_equal``,
``symbolic_equal``, ``is_equiv``), re-implemented here:

- gold answer: the content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) of the reference solution, braces
  matched; a box that is not ``\\boxed{`` ... ``}`` gives None;
- predicted answer: the text after the last "The answer is: " up to ".\\n" (a final "." dropped), else the last
  ``\\boxed{}`` content of the completion;
- equivalence ``is_equiv(gold, prediction)``: both None -> True; one None -> False; else both are normalised
  (:func:`strip_string`) and compared with :func:`math_equal` (numbers within 1e-4 relative, also x100 and /100;
  strings without ``{}()``; tuples/intervals element-wise; finally sympy) or as equal strings; when normalisation
  fails the raw strings are compared the same way.

The sympy step (``parse_latex`` then ``parse_expr``, ``simplify(a - b) == 0`` or numerically close within 1e-3)
evaluates model-written text (``parse_expr`` and ``sympify`` call ``eval``), so it never runs in the caller's
process: :func:`is_equiv` takes a ``symbolic`` callback, and :mod:`spectune.evaluation.t2_scoring` runs the sympy
check in the sandbox of :mod:`spectune.evaluation.execution` (this file's source is shipped into the sandboxed
program, so it imports only the standard library at module level; :func:`sympy_equal` imports sympy inside).
Equivalence is monotone in the sympy step (it can only turn False into True), so a pair that is equivalent
without it needs no sandbox run.

Differences from the official code: an ``IndexError`` of the normalisation (a string ending in ``\\sqrt``) falls
back to the raw strings like the other normalisation errors instead of propagating; sympy's ``parse_latex`` needs
antlr4 4.11 while hydra-core pins 4.9 (here, and in the official requirements), so in both places it fails and
``parse_expr`` is what parses.
"""

from __future__ import annotations

import math
from collections.abc import Callable

SymbolicFn = Callable[[str, str], bool]


def last_boxed_only_string(text: str) -> str | None:
    """The last ``\\boxed{...}`` (else ``\\fbox{...}``) of ``text`` with its braces matched, or None."""
    start = text.rfind("\\boxed")
    if start < 0:
        start = text.rfind("\\fbox")
        if start < 0:
            return None
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start:i + 1]
    return None


def remove_boxed(boxed: str | None) -> str | None:
    """The content of ``\\boxed{content}``; None when ``boxed`` is None or not of that form (e.g. ``\\fbox{}``)."""
    head = "\\boxed{"
    if boxed is None or not boxed.startswith(head) or not boxed.endswith("}"):
        return None
    return boxed[len(head):-1]


def boxed_answer(text: str) -> str | None:
    """``remove_boxed(last_boxed_only_string(text))``: the official gold answer of a MATH solution."""
    return remove_boxed(last_boxed_only_string(text))


def extract_math_answer(completion: str) -> str | None:
    """The official ``extract_ans``: after the last "The answer is: " (to ".\\n", final "." dropped), else boxed."""
    parts = completion.split("The answer is: ")
    if len(parts) > 1:
        answer = parts[-1].split(".\n")[0].strip()
        if answer.endswith("."):
            answer = answer[:-1]
        return answer.strip()
    return boxed_answer(completion)


def _fix_fracs(s: str) -> str:
    """``\\frac12`` -> ``\\frac{1}{2}``, ``\\frac1{2}`` -> ``\\frac{1}{2}``; a too-short tail keeps ``s`` whole."""
    head, *tails = s.split("\\frac")
    out = head
    for tail in tails:
        out += "\\frac"
        if tail.startswith("{"):
            out += tail
            continue
        if len(tail) < 2:
            return s
        a, b, rest = tail[0], tail[1], tail[2:]
        out += "{" + a + "}{" + b + "}" + rest if b != "{" else "{" + a + "}" + b + rest
    return out


def _fix_a_slash_b(s: str) -> str:
    """``3/4`` (two plain integers) -> ``\\frac{3}{4}``."""
    parts = s.split("/")
    if len(parts) != 2:
        return s
    try:
        a, b = int(parts[0]), int(parts[1])
    except ValueError:
        return s
    return "\\frac{" + parts[0] + "}{" + parts[1] + "}" if s == f"{a}/{b}" else s


def _remove_right_units(s: str) -> str:
    """Drop a trailing ``\\text{ unit}``; more than one raises ValueError (the official asserts)."""
    if "\\text{ " not in s:
        return s
    parts = s.split("\\text{ ")
    if len(parts) != 2:
        raise ValueError("more than one \\text{ } unit")
    return parts[0]


def _fix_sqrt(s: str) -> str:
    """``\\sqrt2`` -> ``\\sqrt{2}`` (one character); a trailing bare ``\\sqrt`` raises IndexError."""
    if "\\sqrt" not in s:
        return s
    head, *tails = s.split("\\sqrt")
    out = head
    for tail in tails:
        out += "\\sqrt" + tail if tail[0] == "{" else "\\sqrt{" + tail[0] + "}" + tail[1:]
    return out


def strip_string(s: str) -> str:
    """The official normalisation of an answer string (``_strip_string``), step by step in the same order."""
    for old, new in (("\n", ""), ("\\!", ""), ("\\\\", "\\"), ("tfrac", "frac"), ("dfrac", "frac"),
                     ("\\left", ""), ("\\right", ""), ("^{\\circ}", ""), ("^\\circ", ""), ("\\$", "")):
        s = s.replace(old, new)
    s = _remove_right_units(s)
    s = s.replace("\\\\%", "").replace("\\%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    sides = s.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:
        s = sides[1]
    s = _fix_sqrt(s)
    s = s.replace(" ", "")
    s = _fix_fracs(s)
    if s == "0.5":
        s = "\\frac{1}{2}"
    return _fix_a_slash_b(s)


def _is_number(x: object) -> bool:
    try:
        float(str(x).replace(",", ""))
        return True
    except ValueError:
        return False


def _no_symbolic(a: str, b: str) -> bool:
    return False


def math_equal(prediction: str, reference: str, symbolic: SymbolicFn = _no_symbolic) -> bool:
    """The official ``math_equal(prediction, reference)`` (it is called with the *gold* first).

    Numbers: equal within 1e-4 relative to ``reference``, ``reference / 100`` or ``reference * 100``; else strings
    compared without ``{}()`` (brackets stripped first when only one side is an interval/tuple of the other kind);
    tuples/intervals element-wise; last, ``symbolic(prediction, reference)``.
    """
    if _is_number(prediction) and _is_number(reference):
        p = float(str(prediction).replace(",", ""))
        r = float(str(reference).replace(",", ""))
        return any(math.isclose(item, p, rel_tol=1e-4) for item in (r / 100, r, r * 100))
    if not prediction:
        return False
    reference, prediction = str(reference).strip(), str(prediction).strip()
    pred_s, ref_s = prediction, reference
    if ((prediction.startswith("[") and prediction.endswith("]") and not reference.startswith("("))
            or (prediction.startswith("(") and prediction.endswith(")") and not reference.startswith("["))):
        pred_s, ref_s = pred_s.strip("[]()"), ref_s.strip("[]()")
    for ch in "{}()":
        pred_s, ref_s = pred_s.replace(ch, ""), ref_s.replace(ch, "")
    if pred_s == ref_s:
        return True
    both_brackets = prediction[:1] + prediction[-1:] == "[]" and reference[:1] + reference[-1:] == "[]"
    both_parens = prediction[:1] + prediction[-1:] == "()" and reference[:1] + reference[-1:] == "()"
    if both_brackets or both_parens:
        pred_parts, ref_parts = prediction[1:-1].split(","), reference[1:-1].split(",")
        if len(pred_parts) == len(ref_parts) and all(
                math_equal(p, r, symbolic) for p, r in zip(pred_parts, ref_parts, strict=True)):
            return True
    return bool(symbolic(prediction, reference))


def is_equiv(gold: str | None, prediction: str | None, symbolic: SymbolicFn = _no_symbolic) -> bool:
    """The official ``is_equiv(gold, prediction)``; ``symbolic`` is the sympy step (off by default)."""
    if gold is None and prediction is None:
        return True
    if gold is None or prediction is None:
        return False
    try:
        g, p = strip_string(gold), strip_string(prediction)
        return math_equal(g, p, symbolic) or g == p
    except (AssertionError, TypeError, ValueError, IndexError):
        return math_equal(gold, prediction, symbolic) or gold == prediction


def sympy_equal(a: str, b: str) -> bool:
    """The official ``symbolic_equal``: parse each side (LaTeX, then a Python expression; else keep the string),
    then ``simplify(a - b) == 0`` or ``N(a)`` close to ``N(b)`` within 1e-3. Evaluates its inputs: sandbox only."""
    from sympy import N, simplify
    from sympy.parsing.latex import parse_latex
    from sympy.parsing.sympy_parser import parse_expr

    def parse(s: str) -> object:
        for fn in (parse_latex, parse_expr):
            try:
                return fn(s)
            except Exception:
                pass
        return s

    x, y = parse(a), parse(b)
    try:
        if simplify(x - y) == 0:
            return True
    except Exception:
        pass
    try:
        if math.isclose(N(x), N(y), rel_tol=1e-3):
            return True
    except Exception:
        pass
    return False
