"""``report.html``: the figures of :mod:`.figures` and the plots of :mod:`.plots` as one
self-contained page (inline CSS, images as ``data:`` URIs, no script, nothing fetched).

Everything from the results (ids, messages, file names) goes through Jinja2's autoescaping; the
page's Content-Security-Policy also forbids scripts and every fetch, should one slip through.
"""

from __future__ import annotations

import jinja2

STATUS_TITLES = {
    "timeout": "Timeouts",
    "kernel_died": "Dead kernels",
    "out_of_memory": "Out of memory",
    "restored": "Restored test cells (deleted or edited by the student, graded as the original)",
    "grader_error": "Grader errors (the hidden checks crashed: fix them and regrade)",
}
FAILURES_SHOWN = 5  # per test, most frequent first; report.json has them all

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>{{ title }}</title>
<style>
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d1d1f;
       max-width: 62rem; margin: 0 auto; padding: 1rem 1.5rem 3rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { border-bottom: 2px solid #d0d7de; padding-bottom: .2rem; margin-top: 2.2rem; }
h3 { font-size: 1.05rem; margin: 1.4rem 0 .3rem; }
nav a { margin-right: 1.2rem; }
.note { color: #555; font-size: .9rem; }
table { border-collapse: collapse; width: 100%; margin: .4rem 0 1rem; font-size: .92rem; }
th, td { border-bottom: 1px solid #e1e4e8; padding: .3rem .5rem; text-align: left;
         vertical-align: top; }
th { background: #f6f8fa; }
table.narrow { width: auto; min-width: 24rem; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
code, .msg { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .84rem;
             white-space: pre-wrap; overflow-wrap: anywhere; }
.example { color: #555; font-size: .84rem; margin-top: .2rem; }
img { max-width: 100%; height: auto; display: block; margin: .6rem 0; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(7rem, 1fr));
           gap: .5rem; margin: .8rem 0; }
.figure { background: #f6f8fa; border-radius: 6px; padding: .4rem .7rem; }
.figure b { display: block; font-size: 1.25rem; font-variant-numeric: tabular-nums; }
.warn { color: #a40e26; }
@media print {
  nav { display: none; }
  body { max-width: none; padding: 0; font-size: 10pt; }
  h2, h3 { break-after: avoid; }
  tr, img, .figure { break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
}
</style>
</head>
<body>
<header>
<h1>{{ title }}</h1>
<p class="note">{{ r.students }} students, {{ r.graded }} notebooks graded, out of {{
 r.max_score|num }} points{%
 if r.anonymized %}; student ids replaced by pseudonyms{% endif %}; made {{
 r.generated[:16]|replace("T", " ") }}.</p>
<nav><a href="#scores">Scores</a><a href="#tests">Tests</a><a href="#problems">Problems</a><a
 href="#time">Grading time</a></nav>
</header>

<section id="scores">
<h2>Scores</h2>
{% set s = r.scores %}
<div class="figures">
<div class="figure">students<b>{{ s.n }}</b></div>
<div class="figure">mean<b>{{ s.mean|num }}</b></div>
<div class="figure">median<b>{{ s.median|num }}</b></div>
<div class="figure">quartiles<b>{{ s.q1|num }} – {{ s.q3|num }}</b></div>
<div class="figure">range<b>{{ s.min|num }} – {{ s.max|num }}</b></div>
<div class="figure">full marks<b>{{ s.full_marks }}</b></div>
<div class="figure">zero<b>{{ s.zero }}</b></div>
</div>
{% if images.scores %}<img src="{{ images.scores }}" alt="histogram of the scores">{% endif %}
<p class="note">Every student with a result, including the {{ r.not_graded|length }} whose
notebook could not be graded (0 points), as in grades.csv.</p>
</section>

<section id="tests">
<h2>Tests</h2>
<p class="note">Over the {{ r.graded }} graded notebooks. Passed: full points. In the messages,
<code>#</code> stands for any number: messages that differ only in numbers are counted together.
{% if r.manual_tests %}Written answers, graded by hand, are not here: {{
r.manual_tests|join(", ") }}.{% endif %}</p>
{% if images.tests %}<img src="{{ images.tests }}" alt="pass rate per test">{% endif %}
<table>
<tr><th>test</th><th class="num">points</th><th class="num">passed</th>
<th class="num">pass rate</th><th class="num">points lost</th><th>statuses</th></tr>
{% for t in r.tests %}
<tr><td>{% if t.failures %}<a href="#test-{{ loop.index }}">{{ t.id }}</a>{%
 else %}{{ t.id }}{% endif %}</td><td class="num">{{ t.max_score|num }}</td>
<td class="num">{{ t.passed }} / {{ t.graded }}</td><td class="num">{{ t.pass_rate|percent }}</td>
<td class="num">{{ t.points_lost|num }}</td>
<td>{% for status, n in t.statuses.items() %}{{ status }} {{ n }}{{ ", " if not loop.last }}{%
 endfor %}</td></tr>
{% endfor %}
</table>
{% for t in r.tests %}
{% if t.failures %}
<h3 id="test-{{ loop.index }}">{{ t.id }}: {{ t.graded - t.passed }} notebooks lost points</h3>
<table>
<tr><th class="num">students</th><th>status</th><th>message</th></tr>
{% for f in t.failures[:shown] %}
<tr><td class="num">{{ f.count }}</td><td>{{ f.status }}</td>
<td><div class="msg">{{ f.pattern }}</div>
<div class="example">{{ "e.g. " if f.count > 1 }}{{ f.student }}{% if f.example != f.pattern
 %}: <span class="msg">{{ f.example }}</span>{% endif %}</div></td></tr>
{% endfor %}
</table>
{% set rest = t.failures[shown:] %}
{% if rest %}<p class="note">and {{ rest|length }} other messages ({{ rest|sum(attribute="count")
}} students): see report.json.</p>{% endif %}
{% endif %}
{% endfor %}
</section>

<section id="problems">
<h2>Problems</h2>
{% for status, title in status_titles.items() %}
{% set who = r.statuses[status] %}
<h3>{{ title }}: {{ who|length }}</h3>
{% if who %}<ul>{% for w in who %}<li>{{ w.student }}: {{ w.tests|join(", ") }}</li>{% endfor %}
</ul>{% else %}<p class="note">none</p>{% endif %}
{% endfor %}
<h3>Not graded (no notebook, or a file that is not one): {{ r.not_graded|length }}</h3>
{% if r.not_graded %}
<table><tr><th>student</th><th>file</th><th>reason</th></tr>
{% for n in r.not_graded %}
<tr><td>{{ n.student }}</td><td><code>{{ n.source or "–" }}</code></td>
<td class="msg">{{ n.reason }}</td></tr>
{% endfor %}
</table>
{% else %}<p class="note">none</p>{% endif %}
{% if r.unreadable_results %}
<h3 class="warn">Result files that could not be read: {{ r.unreadable_results|length }}</h3>
<p>{{ r.unreadable_results|join(", ") }}: not in any figure; grade these students again.</p>
{% endif %}
{% if r.no_sandbox %}
<h3 class="warn">Graded without the sandbox: {{ r.no_sandbox|length }}</h3>
<p>{{ r.no_sandbox|join(", ") }}</p>
{% endif %}
</section>

<section id="time">
<h2>Grading time</h2>
{% set t = r.time %}
{% if t.n %}
<div class="figures">
<div class="figure">timed<b>{{ t.n }}</b></div>
<div class="figure">total<b>{{ t.total|duration }}</b></div>
<div class="figure">median<b>{{ t.median|secs }}</b></div>
<div class="figure">quartiles<b>{{ t.q1|secs }} – {{ t.q3|secs }}</b></div>
<div class="figure">slowest<b>{{ t.max|secs }}</b></div>
</div>
{% if images.time %}<img src="{{ images.time }}" alt="histogram of the grading times">{% endif %}
<h3>Slowest submissions</h3>
<table class="narrow"><tr><th>student</th><th class="num">time</th><th class="num">score</th></tr>
{% for w in t.slowest %}
<tr><td>{{ w.student }}</td><td class="num">{{ w.seconds|secs }}</td>
<td class="num">{{ w.score|num if w.graded else "not graded" }}</td></tr>
{% endfor %}
</table>
{% endif %}
{% if t.unknown %}<p class="note">Time unknown for {{ t.unknown }} students (graded before
grade-all recorded it).</p>{% endif %}
<p class="note">Wall time in the worker, per submission; with several workers the batch takes
less than the total.</p>
</section>
</body>
</html>
"""


def _num(x: float | None) -> str:
    """12, 7.5, 7.33 (at most 2 decimals); a dash for None."""
    if x is None:
        return "–"
    return f"{x:.2f}".rstrip("0").rstrip(".")


def _percent(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def _secs(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f} s"


def _duration(seconds: float | None) -> str:
    """1 h 02 min, 3 min 05 s, 42 s."""
    if seconds is None:
        return "–"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                          trim_blocks=True, lstrip_blocks=True)
_ENV.filters |= {"num": _num, "percent": _percent, "duration": _duration, "secs": _secs}


def render(figures: dict, images: dict[str, str]) -> str:
    """The page for ``figures`` (:func:`.figures.class_figures` plus ``generated`` and
    ``anonymized``) with ``images`` ({"scores", "tests", "time"}: data URIs, or "" for none)."""
    title = f"Class report: {figures['assignment'] or 'assignment'}"
    return _ENV.from_string(TEMPLATE).render(r=figures, images=images, title=title,
                                             status_titles=STATUS_TITLES, shown=FAILURES_SHOWN)
