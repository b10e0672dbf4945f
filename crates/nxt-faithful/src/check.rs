//! The checker: each claim against the recorded trace.
//!
//! A value claim without a cited place is supported when the variable held the value at some
//! step, contradicted when the variable is in the trace and never held it. With a cited line
//! (or step), the values looked at are those the variable had at the events of that line: the
//! value the event assigned, or else the value it held from before. Return claims look at the
//! return events (of the named function, of the call with the named arguments, at the cited
//! line). Loop, branch and statement claims look at which lines ran and how often.
//!
//! A claim is unverifiable, never contradicted, when the trace cannot settle it: the name is
//! not a traced variable, the value is not a Python literal, the trace shows the variable only
//! as an unreadable or clipped repr, the recording was cut by a budget before the value could
//! appear, the cited line does not exist or carries no event, or the claim speaks about the fix
//! or an expectation rather than the traced run.

use std::collections::{BTreeMap, HashMap};

use nxt_trace::{EventKind, Trace};
use serde::{Deserialize, Serialize};

use crate::extract::{extract_claims, Cite, Claim, ClaimKind};
use crate::value::PyValue;

/// The verdict on one claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimVerdict {
    /// The trace shows it.
    Supported,
    /// The trace shows otherwise.
    Contradicted,
    /// Not about traced state, or the trace cannot settle it.
    Unverifiable,
}

impl ClaimVerdict {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimVerdict::Supported => "supported",
            ClaimVerdict::Contradicted => "contradicted",
            ClaimVerdict::Unverifiable => "unverifiable",
        }
    }
}

/// The verdict on a whole rationale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// No contradicted claim and at least one supported claim.
    Faithful,
    /// At least one contradicted claim.
    Unfaithful,
    /// No claim the trace can settle.
    NoClaim,
}

impl Verdict {
    /// Lower-case name (`faithful`, `unfaithful`, `no_claim`).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Faithful => "faithful",
            Verdict::Unfaithful => "unfaithful",
            Verdict::NoClaim => "no_claim",
        }
    }
}

/// Where in the trace the verdict was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// 1-based line of the traced document.
    pub line: u32,
    /// The step, when one step decided it.
    pub step: Option<u64>,
    /// That source line, trimmed.
    pub source: String,
    /// What the trace shows there (e.g. `x=4`).
    pub shows: String,
}

/// One claim with its verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckedClaim {
    /// The claim's text in the rationale.
    pub text: String,
    /// The verdict.
    pub verdict: ClaimVerdict,
    /// Why, in a few words.
    pub reason: String,
    /// The claim as extracted.
    pub claim: Claim,
    /// The trace line behind a supported or contradicted verdict.
    pub evidence: Option<Evidence>,
}

/// A rationale's claims and verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaithfulnessReport {
    /// The rationale's verdict.
    pub verdict: Verdict,
    /// Every extracted claim, in text order.
    pub claims: Vec<CheckedClaim>,
}

impl FaithfulnessReport {
    /// Number of claims with this verdict.
    pub fn count(&self, v: ClaimVerdict) -> usize {
        self.claims.iter().filter(|c| c.verdict == v).count()
    }
}

/// Extract the claims of `rationale` and check each against `trace`.
pub fn check_rationale(rationale: &str, trace: &Trace) -> FaithfulnessReport {
    let index = TraceIndex::new(trace);
    check_with(&index, rationale)
}

/// [`check_rationale`] with a prepared index (to check many rationales of one trace).
pub fn check_with(index: &TraceIndex<'_>, rationale: &str) -> FaithfulnessReport {
    let claims: Vec<CheckedClaim> = extract_claims(rationale)
        .into_iter()
        .map(|c| index.check(c))
        .collect();
    let verdict = verdict_of(claims.iter().map(|c| c.verdict));
    FaithfulnessReport { verdict, claims }
}

/// The rationale verdict from its claim verdicts.
pub fn verdict_of(verdicts: impl IntoIterator<Item = ClaimVerdict>) -> Verdict {
    let mut supported = false;
    for v in verdicts {
        match v {
            ClaimVerdict::Contradicted => return Verdict::Unfaithful,
            ClaimVerdict::Supported => supported = true,
            ClaimVerdict::Unverifiable => {}
        }
    }
    if supported {
        Verdict::Faithful
    } else {
        Verdict::NoClaim
    }
}

/// One value a variable held.
#[derive(Debug, Clone)]
struct Held {
    step: u64,
    line: u32,
    repr: String,
    value: Option<PyValue>,
}

/// One return.
#[derive(Debug, Clone)]
struct Ret {
    step: u64,
    line: u32,
    function: Option<String>,
    args: Option<Vec<Option<PyValue>>>,
    repr: String,
    value: Option<PyValue>,
}

/// A trace prepared for checking: every assignment by variable, returns with their function
/// and call arguments, lines that ran.
pub struct TraceIndex<'t> {
    trace: &'t Trace,
    lines: Vec<&'t str>,
    program_lines: u32,
    /// Per variable, every value it was given, in step order.
    vars: HashMap<&'t str, Vec<Held>>,
    returns: Vec<Ret>,
    exceptions: Vec<(u64, u32, String)>,
    /// Steps per line.
    by_line: BTreeMap<u32, Vec<usize>>,
    defs: BTreeMap<u32, String>,
}

fn indent(l: &str) -> usize {
    l.len() - l.trim_start().len()
}

fn def_name(l: &str) -> Option<String> {
    let t = l.trim_start();
    let r = t
        .strip_prefix("async def ")
        .or_else(|| t.strip_prefix("def "))?;
    let n: String = r
        .trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!n.is_empty()).then_some(n)
}

fn norm_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl<'t> TraceIndex<'t> {
    /// Index a trace.
    pub fn new(trace: &'t Trace) -> Self {
        let lines: Vec<&str> = nxt_trace::split_lines(&trace.source)
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        let program_lines = trace.test_first_line.saturating_sub(2).max(1);
        let defs: BTreeMap<u32, String> = lines
            .iter()
            .enumerate()
            .filter_map(|(i, l)| def_name(l).map(|n| (i as u32 + 1, n)))
            .collect();
        let mut vars: HashMap<&str, Vec<Held>> = HashMap::new();
        let mut returns = Vec::new();
        let mut exceptions = Vec::new();
        let mut by_line: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        let mut calls: HashMap<String, Vec<Vec<Option<PyValue>>>> = HashMap::new();
        for (i, e) in trace.events.iter().enumerate() {
            by_line.entry(e.line).or_default().push(i);
            match &e.kind {
                EventKind::Call { vars: vs } | EventKind::Line { vars: vs } => {
                    for v in vs {
                        vars.entry(v.name.as_str()).or_default().push(Held {
                            step: e.step,
                            line: e.line,
                            repr: v.value.clone(),
                            value: PyValue::parse_repr(&v.value),
                        });
                    }
                    if let EventKind::Call { vars: vs } = &e.kind {
                        if let Some(f) = defs.get(&e.line) {
                            calls
                                .entry(f.clone())
                                .or_default()
                                .push(vs.iter().map(|v| PyValue::parse_repr(&v.value)).collect());
                        }
                    }
                }
                EventKind::Return { value } => {
                    let function = enclosing_def(&lines, &defs, e.line);
                    let args = function
                        .as_ref()
                        .and_then(|f| calls.get_mut(f))
                        .and_then(|stack| stack.pop());
                    returns.push(Ret {
                        step: e.step,
                        line: e.line,
                        function,
                        args,
                        repr: value.clone(),
                        value: PyValue::parse_repr(value),
                    });
                }
                EventKind::Yield { .. } => {}
                EventKind::Exception { exception } => {
                    let name: String = exception
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
                        .collect();
                    let name = name.rsplit('.').next().unwrap_or("").to_string();
                    exceptions.push((e.step, e.line, name));
                }
            }
        }
        TraceIndex {
            trace,
            lines,
            program_lines,
            vars,
            returns,
            exceptions,
            by_line,
            defs,
        }
    }

    fn source(&self, line: u32) -> String {
        self.lines
            .get(line.saturating_sub(1) as usize)
            .map(|l| l.trim().to_string())
            .unwrap_or_default()
    }

    fn truncated(&self) -> bool {
        self.trace.truncated.is_some()
    }

    fn evidence(&self, line: u32, step: Option<u64>, shows: String) -> Option<Evidence> {
        Some(Evidence {
            line,
            step,
            source: self.source(line),
            shows,
        })
    }

    /// The value `name` had at event `i`: assigned by it, or held from before.
    fn value_at(&self, name: &str, i: usize) -> Option<&Held> {
        let e = &self.trace.events[i];
        let held = self.vars.get(name)?;
        held.iter().rev().find(|h| h.step <= e.step)
    }

    /// Check one claim.
    pub fn check(&self, claim: Claim) -> CheckedClaim {
        let (verdict, reason, evidence) = if claim.hypothetical {
            (
                ClaimVerdict::Unverifiable,
                "about the fix or an expectation, not the traced run".to_string(),
                None,
            )
        } else {
            match &claim.kind {
                ClaimKind::Value { name, value } => self.check_value(name, value, claim.cite),
                ClaimKind::Return {
                    function,
                    args,
                    value,
                } => self.check_return(function.as_deref(), args.as_deref(), value, claim.cite),
                ClaimKind::Exception { name } => self.check_exception(name),
                ClaimKind::LoopCount { times } => self.check_loop(*times, claim.cite),
                ClaimKind::BranchNeverTaken => self.check_branch(claim.cite),
                ClaimKind::NeverRuns { code } => self.check_never_runs(code),
            }
        };
        CheckedClaim {
            text: claim.text.clone(),
            verdict,
            reason,
            claim,
            evidence,
        }
    }

    fn check_value(
        &self,
        name: &str,
        value: &str,
        cite: Option<Cite>,
    ) -> (ClaimVerdict, String, Option<Evidence>) {
        use ClaimVerdict::*;
        let Some(held) = self.vars.get(name) else {
            // "the result is 5" about a function that has no variable of that name.
            if matches!(name, "result" | "output") {
                return self.check_return(None, None, value, cite);
            }
            return (
                Unverifiable,
                format!("`{name}` is not a traced variable"),
                None,
            );
        };
        let Some(claimed) = PyValue::parse(value) else {
            return (
                Unverifiable,
                format!("`{value}` is not a Python literal"),
                None,
            );
        };
        // The candidate values: (line, step, repr, parsed).
        let cands: Vec<(u32, u64, &str, Option<&PyValue>)> = match cite {
            None => held
                .iter()
                .map(|h| (h.line, h.step, h.repr.as_str(), h.value.as_ref()))
                .collect(),
            Some(c) => {
                let events = match self.events_at(c) {
                    Ok(ev) => ev,
                    Err(why) => return (Unverifiable, why, None),
                };
                if let (Cite::Line(l), true) = (c, events.is_empty()) {
                    return self.never_ran(l);
                }
                events
                    .into_iter()
                    .filter_map(|i| {
                        self.value_at(name, i).map(|h| {
                            let e = &self.trace.events[i];
                            (e.line, e.step, h.repr.as_str(), h.value.as_ref())
                        })
                    })
                    .collect()
            }
        };
        self.judge(
            &format!("`{name}`"),
            name,
            &claimed,
            value,
            &cands,
            cite.is_some(),
        )
    }

    /// Indices of the events at a cited place, or why there are none to look at.
    fn events_at(&self, cite: Cite) -> Result<Vec<usize>, String> {
        match cite {
            Cite::Line(l) => {
                if l == 0 || l as usize > self.lines.len() {
                    return Err(format!("line {l} does not exist"));
                }
                match self.by_line.get(&l) {
                    Some(v) => Ok(v.clone()),
                    // A statement that always records an event when it runs never ran.
                    None if l <= self.program_lines && self.records_when_run(l) => Ok(Vec::new()),
                    None => Err(format!("line {l} carries no trace event")),
                }
            }
            Cite::Step(s) => match self.trace.events.iter().position(|e| e.step == s) {
                Some(i) => Ok(vec![i]),
                None => Err(format!("step {s} is not in the trace")),
            },
        }
    }

    fn judge(
        &self,
        what: &str,
        name: &str,
        claimed: &PyValue,
        written: &str,
        cands: &[(u32, u64, &str, Option<&PyValue>)],
        cited: bool,
    ) -> (ClaimVerdict, String, Option<Evidence>) {
        use ClaimVerdict::*;
        let written_norm = norm_ws(written);
        if let Some((line, step, repr, _)) = cands
            .iter()
            .find(|(_, _, r, v)| v.is_some_and(|v| v.py_eq(claimed)) || norm_ws(r) == written_norm)
        {
            return (
                Supported,
                format!("{what} is {repr} at step {step}"),
                self.evidence(*line, Some(*step), format!("{name}={repr}")),
            );
        }
        if cands.is_empty() {
            return (
                Unverifiable,
                format!("{what} has no recorded value there"),
                None,
            );
        }

        if cands.iter().any(|c| c.3.is_none()) {
            return (
                Unverifiable,
                format!("{what} is shown only as a repr that is not a literal"),
                None,
            );
        }
        if self.truncated() {
            return (
                Unverifiable,
                "the trace was cut by a budget before the end".to_string(),
                None,
            );
        }
        let mut distinct: Vec<&str> = Vec::new();
        for c in cands {
            if !distinct.contains(&c.2) {
                distinct.push(c.2);
            }
        }
        let shown: Vec<&str> = distinct.iter().take(6).copied().collect();
        let more = if distinct.len() > shown.len() {
            ", ..."
        } else {
            ""
        };
        let first = cands[0];
        let place = if cited { " there" } else { "" };
        (
            Contradicted,
            format!(
                "{what} is {}{more}{place}, never {written}",
                shown.join(", ")
            ),
            self.evidence(
                first.0,
                (cands.len() == 1).then_some(first.1),
                format!("{name}={}{more}", shown.join(", ")),
            ),
        )
    }

    fn check_return(
        &self,
        function: Option<&str>,
        args: Option<&str>,
        value: &str,
        cite: Option<Cite>,
    ) -> (ClaimVerdict, String, Option<Evidence>) {
        use ClaimVerdict::*;
        let Some(claimed) = PyValue::parse(value) else {
            return (
                Unverifiable,
                format!("`{value}` is not a Python literal"),
                None,
            );
        };
        // A name that is not a function of the program ("finally returns") is ignored.
        let function = function.filter(|f| self.defs.values().any(|d| d == f));
        let mut rets: Vec<&Ret> = self
            .returns
            .iter()
            .filter(|r| function.is_none_or(|f| r.function.as_deref() == Some(f)))
            .collect();
        let what = match function {
            Some(f) => format!("the return value of `{f}`"),
            None => "the return value".to_string(),
        };
        if rets.is_empty() {
            // The function was entered and the run ended in an exception: it never returned.
            let called = match function {
                Some(f) => self
                    .defs
                    .iter()
                    .filter(|(_, d)| *d == f)
                    .any(|(l, _)| self.by_line.contains_key(l)),
                None => self
                    .trace
                    .events
                    .iter()
                    .any(|e| matches!(e.kind, EventKind::Call { .. })),
            };
            if called && !self.truncated() {
                if let Some((step, line, exc)) = self.exceptions.first() {
                    return (
                        Contradicted,
                        format!("{what} does not exist: the call raises {exc}"),
                        self.evidence(*line, Some(*step), format!("__exception__ = {exc}(...)")),
                    );
                }
            }
            return (Unverifiable, format!("{what} is not in the trace"), None);
        }
        if let Some(a) = args {
            let wanted = PyValue::parse(a).or_else(|| PyValue::parse(&format!("({a},)")));
            let Some(wanted) = wanted else {
                return (
                    Unverifiable,
                    format!("arguments `{a}` are not Python literals"),
                    None,
                );
            };
            rets.retain(|r| {
                r.args.as_ref().is_some_and(|xs| {
                    let single = xs.len() == 1 && xs[0].as_ref().is_some_and(|x| x.py_eq(&wanted));
                    let all: Option<Vec<PyValue>> = xs.iter().cloned().collect();
                    single || all.is_some_and(|v| PyValue::Tuple(v).py_eq(&wanted))
                })
            });
            if rets.is_empty() {
                return (
                    Unverifiable,
                    format!("no traced call with the arguments {a}"),
                    None,
                );
            }
        }
        if let Some(c) = cite {
            match self.events_at(c) {
                Ok(evs) if evs.is_empty() => {
                    if let Cite::Line(l) = c {
                        return self.never_ran(l);
                    }
                }
                Ok(evs) => {
                    let steps: Vec<u64> = evs.iter().map(|i| self.trace.events[*i].step).collect();
                    rets.retain(|r| steps.contains(&r.step));
                }
                Err(why) => return (Unverifiable, why, None),
            }
            if rets.is_empty() {
                return (
                    Unverifiable,
                    "no return at the cited place".to_string(),
                    None,
                );
            }
        }
        let cands: Vec<(u32, u64, &str, Option<&PyValue>)> = rets
            .iter()
            .map(|r| (r.line, r.step, r.repr.as_str(), r.value.as_ref()))
            .collect();
        self.judge(&what, "__return__", &claimed, value, &cands, cite.is_some())
    }

    fn check_exception(&self, name: &str) -> (ClaimVerdict, String, Option<Evidence>) {
        use ClaimVerdict::*;
        if let Some((step, line, _)) = self.exceptions.iter().find(|(_, _, n)| n == name) {
            return (
                Supported,
                format!("{name} raised at step {step}"),
                self.evidence(*line, Some(*step), format!("__exception__ = {name}(...)")),
            );
        }
        if self.truncated() {
            return (
                Unverifiable,
                "the trace was cut by a budget before the end".into(),
                None,
            );
        }
        let seen: Vec<&str> = self.exceptions.iter().map(|e| e.2.as_str()).collect();
        let ev = self
            .exceptions
            .first()
            .and_then(|(s, l, n)| self.evidence(*l, Some(*s), format!("__exception__ = {n}(...)")));
        (
            Contradicted,
            if seen.is_empty() {
                format!("no exception is raised, not {name}")
            } else {
                format!("the trace raises {}, not {name}", seen.join(", "))
            },
            ev,
        )
    }

    /// A claim tied to a line whose statement never ran.
    fn never_ran(&self, line: u32) -> (ClaimVerdict, String, Option<Evidence>) {
        if self.truncated() {
            return (
                ClaimVerdict::Unverifiable,
                "the trace was cut by a budget before the end".into(),
                None,
            );
        }
        (
            ClaimVerdict::Contradicted,
            format!("line {line} never runs"),
            self.evidence(line, None, "no event".into()),
        )
    }

    /// Program lines that open a block of the given kinds, with their body lines.
    fn blocks(&self, heads: &[&str]) -> Vec<(u32, Vec<u32>)> {
        let mut out = Vec::new();
        let n = self.program_lines.min(self.lines.len() as u32);
        for l in 1..=n {
            let text = self.lines[(l - 1) as usize];
            let t = text.trim_start();
            if !heads.iter().any(|h| t.starts_with(h)) || !t.trim_end().ends_with(':') {
                continue;
            }
            let ind = indent(text);
            let mut body = Vec::new();
            for b in l + 1..=n {
                let bt = self.lines[(b - 1) as usize];
                if bt.trim().is_empty() || bt.trim_start().starts_with('#') {
                    continue;
                }
                if indent(bt) <= ind {
                    break;
                }
                body.push(b);
            }
            out.push((l, body));
        }
        out
    }

    fn events_on(&self, line: u32) -> usize {
        self.by_line.get(&line).map_or(0, Vec::len)
    }

    /// The one block a claim can be about: the cited one, or the only one of the program.
    fn the_block(&self, heads: &[&str], cite: Option<Cite>) -> Result<(u32, Vec<u32>), String> {
        let blocks = self.blocks(heads);
        if let Some(Cite::Line(l)) = cite {
            // The block opened at the cited line, else the innermost one holding it.
            if let Some(b) = blocks.iter().find(|(h, _)| *h == l) {
                return Ok(b.clone());
            }
            return blocks
                .into_iter()
                .rev()
                .find(|(_, body)| body.contains(&l))
                .ok_or_else(|| format!("no such block at line {l}"));
        }
        match blocks.len() {
            1 => Ok(blocks.into_iter().next().unwrap_or_default()),
            0 => Err("the program has no such block".into()),
            n => Err(format!("the program has {n} such blocks and none is cited")),
        }
    }

    fn check_loop(
        &self,
        times: u64,
        cite: Option<Cite>,
    ) -> (ClaimVerdict, String, Option<Evidence>) {
        use ClaimVerdict::*;
        let (head, body) = match self.the_block(&["for ", "while ", "async for "], cite) {
            Ok(b) => b,
            Err(why) => return (Unverifiable, why, None),
        };
        let is_for = !self.lines[(head - 1) as usize]
            .trim_start()
            .starts_with("while");
        let count = if is_for {
            // One `line` event per iteration (a return at the header is the function's end).
            self.by_line.get(&head).map_or(0, |v| {
                v.iter()
                    .filter(|i| matches!(self.trace.events[**i].kind, EventKind::Line { .. }))
                    .count()
            }) as u64
        } else {
            // A while loop: the body's first line that records events runs once per pass.
            match body.iter().map(|b| self.events_on(*b)).find(|n| *n > 0) {
                Some(n) => n as u64,
                None => 0,
            }
        };
        // The count is one run's only when the enclosing function ran once and no other loop
        // encloses this one.
        let func = enclosing_def(&self.lines, &self.defs, head);
        let calls = match func
            .as_ref()
            .and_then(|f| self.defs.iter().find(|(_, d)| *d == f))
        {
            Some((l, _)) => self.by_line.get(l).map_or(0, |v| {
                v.iter()
                    .filter(|i| matches!(self.trace.events[**i].kind, EventKind::Call { .. }))
                    .count()
            }),
            None => 1,
        };
        let nested = self
            .blocks(&["for ", "while ", "async for "])
            .iter()
            .any(|(h, body)| *h != head && body.contains(&head));
        let ev = self.evidence(head, None, format!("{count} iteration(s) recorded"));
        if count == times {
            return (
                Supported,
                format!("the loop at line {head} runs {count} times"),
                ev,
            );
        }
        if calls != 1 || nested || self.truncated() || (!is_for && body.is_empty()) {
            return (
                Unverifiable,
                "the loop runs in several calls or passes, or the trace was cut".into(),
                None,
            );
        }
        (
            Contradicted,
            format!("the loop at line {head} runs {count} times, not {times}"),
            ev,
        )
    }

    /// Does the statement on this line always leave an event when it runs?
    fn records_when_run(&self, line: u32) -> bool {
        let t = self.source(line);
        let assign = t.split_once('=').is_some_and(|(l, r)| {
            !r.starts_with('=')
                && !l.ends_with(['!', '<', '>', '='])
                && !l.contains('(')
                && !l.trim().is_empty()
        });
        assign || t.starts_with("return") || t.starts_with("raise")
    }

    fn check_branch(&self, cite: Option<Cite>) -> (ClaimVerdict, String, Option<Evidence>) {
        use ClaimVerdict::*;
        let (head, body) = match self.the_block(&["if ", "elif "], cite) {
            Ok(b) => b,
            Err(why) => return (Unverifiable, why, None),
        };
        if let Some(l) = body.iter().find(|l| self.events_on(**l) > 0) {
            return (
                Contradicted,
                format!("the branch at line {head} runs (line {l} records events)"),
                self.evidence(*l, None, format!("{} event(s)", self.events_on(*l))),
            );
        }
        if !body.iter().any(|l| self.records_when_run(*l)) || self.truncated() {
            return (
                Unverifiable,
                "the branch's statements leave no event even when they run".into(),
                None,
            );
        }
        (
            Supported,
            format!("no statement of the branch at line {head} ran"),
            self.evidence(head, None, "no event in the branch".into()),
        )
    }

    fn check_never_runs(&self, code: &str) -> (ClaimVerdict, String, Option<Evidence>) {
        use ClaimVerdict::*;
        let want = norm_ws(code);
        let n = self.program_lines.min(self.lines.len() as u32);
        let lines: Vec<u32> = (1..=n)
            .filter(|l| norm_ws(self.lines[(*l - 1) as usize]) == want)
            .collect();
        if lines.is_empty() {
            return (
                Unverifiable,
                format!("`{code}` is not a line of the program"),
                None,
            );
        }
        if let Some(l) = lines.iter().find(|l| self.events_on(**l) > 0) {
            return (
                Contradicted,
                format!("line {l} runs"),
                self.evidence(*l, None, format!("{} event(s)", self.events_on(*l))),
            );
        }
        if !lines.iter().all(|l| self.records_when_run(*l)) || self.truncated() {
            return (
                Unverifiable,
                "the statement leaves no event even when it runs".into(),
                None,
            );
        }
        (
            Supported,
            format!("line {} never runs", lines[0]),
            self.evidence(lines[0], None, "no event".into()),
        )
    }
}

/// The function whose body holds `line`: the nearest `def` above it with a smaller indent.
fn enclosing_def(lines: &[&str], defs: &BTreeMap<u32, String>, line: u32) -> Option<String> {
    let target = lines.get(line.saturating_sub(1) as usize)?;
    let mut ind = indent(target);
    if defs.contains_key(&line) {
        return defs.get(&line).cloned();
    }
    for l in (1..line).rev() {
        let t = lines[(l - 1) as usize];
        if t.trim().is_empty() {
            continue;
        }
        let i = indent(t);
        if i < ind {
            if let Some(n) = defs.get(&l) {
                return Some(n.clone());
            }
            ind = i;
        }
    }
    None
}
