//! The toy's function templates, their instances, the injected bugs and the hand-made
//! rationales.
//!
//! Three skeletons with slots (see [`TemplateKind`]); a template fixes the slot values that
//! the specification names in words ("at least" is `>=`, "product" is `* x` from 1, "up to
//! and including n" is `range(lo, n + 1)`), an instance varies the names, the constant and
//! the test inputs, and a bug changes exactly one slot. Every program line that a slot
//! decides is written by one small function here, so the buggy and the correct program differ
//! in exactly one line.

use serde::{Deserialize, Serialize};

/// A small deterministic generator (SplitMix64).
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator for `seed`, decorrelated per `stream`.
    pub(crate) fn new(seed: u64, stream: u64) -> Rng {
        let mut r = Rng(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        r.next_u64();
        r
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1).max(1) as usize) as i64
    }

    pub(crate) fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }

    pub(crate) fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.below(i + 1);
            xs.swap(i, j);
        }
    }
}

/// How an instance names its function, parameter, loop variable and accumulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Naming {
    /// One set of names per skeleton, the function always `f` (`def f(xs):`, `x`,
    /// `total`): the fix can be written from the specification alone, without copying names
    /// from the prompt, which a tiny model trained for minutes on a CPU cannot learn.
    #[default]
    Fixed,
    /// Names drawn per instance, the function named after its template (`product_ge`):
    /// fixing needs copying the buggy program, as with real models.
    Varied,
}

/// The kind of the injected bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BugKind {
    /// A comparison operator other than the specified one (`>` for "at least").
    WrongComparison,
    /// A constant off by one (the threshold, the range start).
    WrongConstant,
    /// The operands of a comparison or of a concatenation swapped.
    SwappedArguments,
    /// The wrong arithmetic operator in the accumulation.
    WrongOperator,
    /// The wrong initial value of the accumulator.
    WrongInit,
    /// The loop variable returned instead of the accumulator.
    WrongReturn,
    /// The range bound off by one (`range(1, n)` for "up to and including n").
    WrongBound,
    /// The wrong string predicate (`isupper` for "lower-case letters").
    WrongPredicate,
    /// A `not` missing or added in the condition.
    WrongNegation,
}

impl BugKind {
    /// Name as written in files (`wrong-comparison`, ...).
    pub fn name(self) -> &'static str {
        match self {
            BugKind::WrongComparison => "wrong-comparison",
            BugKind::WrongConstant => "wrong-constant",
            BugKind::SwappedArguments => "swapped-arguments",
            BugKind::WrongOperator => "wrong-operator",
            BugKind::WrongInit => "wrong-init",
            BugKind::WrongReturn => "wrong-return",
            BugKind::WrongBound => "wrong-bound",
            BugKind::WrongPredicate => "wrong-predicate",
            BugKind::WrongNegation => "wrong-negation",
        }
    }
}

/// What a list template accumulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ListAgg {
    /// `acc = acc + x`, from 0.
    Sum,
    /// `acc = acc * x`, from 1.
    Product,
    /// `acc = acc + 1`, from 0.
    Count,
    /// `acc = acc + x * x`, from 0.
    SumSquares,
}

/// A comparison of the list templates' condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cmp {
    /// `>`: "greater than".
    Gt,
    /// `>=`: "at least".
    Ge,
    /// `<`: "less than".
    Lt,
    /// `<=`: "at most".
    Le,
    /// `==`: "equal to".
    Eq,
    /// `!=`: "not equal to".
    Ne,
}

impl Cmp {
    const ALL: [Cmp; 6] = [Cmp::Gt, Cmp::Ge, Cmp::Lt, Cmp::Le, Cmp::Eq, Cmp::Ne];

    fn op(self) -> &'static str {
        match self {
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Eq => "==",
            Cmp::Ne => "!=",
        }
    }

    fn words(self) -> &'static str {
        match self {
            Cmp::Gt => "greater than",
            Cmp::Ge => "at least",
            Cmp::Lt => "less than",
            Cmp::Le => "at most",
            Cmp::Eq => "equal to",
            Cmp::Ne => "not equal to",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Cmp::Gt => "gt",
            Cmp::Ge => "ge",
            Cmp::Lt => "lt",
            Cmp::Le => "le",
            Cmp::Eq => "eq",
            Cmp::Ne => "ne",
        }
    }

    /// The comparisons a bug may put in its place.
    fn confusions(self) -> &'static [Cmp] {
        match self {
            Cmp::Gt => &[Cmp::Ge, Cmp::Lt],
            Cmp::Ge => &[Cmp::Gt, Cmp::Le],
            Cmp::Lt => &[Cmp::Le, Cmp::Gt],
            Cmp::Le => &[Cmp::Lt, Cmp::Ge],
            Cmp::Eq => &[Cmp::Ne, Cmp::Ge],
            Cmp::Ne => &[Cmp::Eq, Cmp::Gt],
        }
    }
}

/// What a range template accumulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RangeAgg {
    /// `acc = acc + i`, from 0.
    Sum,
    /// `acc = acc * i`, from 1.
    Product,
    /// `acc = acc + i * i`, from 0.
    SumSquares,
}

/// The end of a range template's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bound {
    /// "up to and including n": `range(lo, n + 1)`.
    Inclusive,
    /// "up to but excluding n": `range(lo, n)`.
    Exclusive,
}

impl Bound {
    fn words(self) -> &'static str {
        match self {
            Bound::Inclusive => "up to and including",
            Bound::Exclusive => "up to but excluding",
        }
    }
}

/// What a string template does with the characters it selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StrAgg {
    /// Keep them, in order: `acc = acc + ch`, from `''`.
    Keep,
    /// Count them: `acc = acc + 1`, from 0.
    Count,
}

/// The string predicate of a string template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pred {
    /// `isdigit()`: "digits".
    Digit,
    /// `isalpha()`: "letters".
    Alpha,
    /// `isupper()`: "upper-case letters".
    Upper,
    /// `islower()`: "lower-case letters".
    Lower,
}

impl Pred {
    const ALL: [Pred; 4] = [Pred::Digit, Pred::Alpha, Pred::Upper, Pred::Lower];

    fn method(self) -> &'static str {
        match self {
            Pred::Digit => "isdigit",
            Pred::Alpha => "isalpha",
            Pred::Upper => "isupper",
            Pred::Lower => "islower",
        }
    }

    fn words(self) -> &'static str {
        match self {
            Pred::Digit => "digits",
            Pred::Alpha => "letters",
            Pred::Upper => "upper-case letters",
            Pred::Lower => "lower-case letters",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Pred::Digit => "digits",
            Pred::Alpha => "letters",
            Pred::Upper => "upper",
            Pred::Lower => "lower",
        }
    }

    fn confusions(self) -> &'static [Pred] {
        match self {
            Pred::Digit => &[Pred::Alpha],
            Pred::Alpha => &[Pred::Digit, Pred::Lower],
            Pred::Upper => &[Pred::Lower],
            Pred::Lower => &[Pred::Upper],
        }
    }
}

/// The skeleton of a template and its fixed slot values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "skeleton", rename_all = "kebab-case")]
pub enum TemplateKind {
    /// `for x in xs: if x <cmp> k: acc = acc <op> <term>`.
    List {
        /// The accumulation.
        agg: ListAgg,
        /// The condition's comparison.
        cmp: Cmp,
    },
    /// `for i in range(lo, <n or n + 1>): acc = acc <op> <term>`.
    Range {
        /// The accumulation.
        agg: RangeAgg,
        /// The range's end.
        bound: Bound,
    },
    /// `for ch in s: if [not] ch.<pred>(): acc = acc + <ch or 1>`.
    Str {
        /// Keep or count.
        agg: StrAgg,
        /// The predicate.
        pred: Pred,
        /// Whether the condition is negated.
        negated: bool,
    },
}

/// One function template: an id and its slot values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    /// Stable id, e.g. `list-product-ge`, `range-sum-incl`, `str-count-not-digits`.
    pub id: String,
    /// Skeleton and slot values.
    pub kind: TemplateKind,
}

impl Template {
    /// The skeleton's name (`list`, `range`, `str`).
    pub fn skeleton(&self) -> &'static str {
        match self.kind {
            TemplateKind::List { .. } => "list",
            TemplateKind::Range { .. } => "range",
            TemplateKind::Str { .. } => "str",
        }
    }

    /// The slot values of this template, each as `skeleton:slot=value`; a held-out template
    /// must only combine values that training templates have.
    pub fn slot_values(&self) -> Vec<String> {
        let s = self.skeleton();
        match self.kind {
            TemplateKind::List { agg, cmp } => {
                vec![format!("{s}:agg={agg:?}"), format!("{s}:cmp={cmp:?}")]
            }
            TemplateKind::Range { agg, bound } => {
                vec![format!("{s}:agg={agg:?}"), format!("{s}:bound={bound:?}")]
            }
            TemplateKind::Str { agg, pred, negated } => vec![
                format!("{s}:agg={agg:?}"),
                format!("{s}:pred={pred:?}"),
                format!("{s}:negated={negated}"),
            ],
        }
    }

    /// The function name of every instance.
    fn function_name(&self) -> String {
        match self.kind {
            TemplateKind::List { agg, cmp } => {
                let a = match agg {
                    ListAgg::Sum => "sum",
                    ListAgg::Product => "product",
                    ListAgg::Count => "count",
                    ListAgg::SumSquares => "sum_squares",
                };
                format!("{a}_{}", cmp.short())
            }
            TemplateKind::Range { agg, bound } => {
                let a = match agg {
                    RangeAgg::Sum => "sum",
                    RangeAgg::Product => "product",
                    RangeAgg::SumSquares => "sum_squares",
                };
                let b = match bound {
                    Bound::Inclusive => "upto",
                    Bound::Exclusive => "below",
                };
                format!("{a}_{b}")
            }
            TemplateKind::Str { agg, pred, negated } => {
                let a = match agg {
                    StrAgg::Keep => "keep",
                    StrAgg::Count => "count",
                };
                let n = if negated { "non_" } else { "" };
                format!("{a}_{n}{}", pred.short())
            }
        }
    }
}

/// Every template of the toy (46: 24 list, 6 range, 16 string), in a fixed order.
pub fn templates() -> Vec<Template> {
    let mut out = Vec::new();
    for agg in [
        ListAgg::Sum,
        ListAgg::Product,
        ListAgg::Count,
        ListAgg::SumSquares,
    ] {
        for cmp in Cmp::ALL {
            let kind = TemplateKind::List { agg, cmp };
            let a = format!("{agg:?}").to_lowercase();
            out.push(Template {
                id: format!("list-{a}-{}", cmp.short()),
                kind,
            });
        }
    }
    for agg in [RangeAgg::Sum, RangeAgg::Product, RangeAgg::SumSquares] {
        for bound in [Bound::Inclusive, Bound::Exclusive] {
            let a = format!("{agg:?}").to_lowercase();
            let b = match bound {
                Bound::Inclusive => "incl",
                Bound::Exclusive => "excl",
            };
            out.push(Template {
                id: format!("range-{a}-{b}"),
                kind: TemplateKind::Range { agg, bound },
            });
        }
    }
    for agg in [StrAgg::Keep, StrAgg::Count] {
        for pred in Pred::ALL {
            for negated in [false, true] {
                let a = format!("{agg:?}").to_lowercase();
                let n = if negated { "not-" } else { "" };
                out.push(Template {
                    id: format!("str-{a}-{n}{}", pred.short()),
                    kind: TemplateKind::Str { agg, pred, negated },
                });
            }
        }
    }
    out
}

/// The accumulation operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
}

impl Op {
    fn sym(self) -> &'static str {
        match self {
            Op::Add => "+",
            Op::Sub => "-",
            Op::Mul => "*",
        }
    }
}

/// What is accumulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Term {
    Var,
    One,
    Square,
}

/// The semantic slot values of one (correct or buggy) program.
#[derive(Debug, Clone, PartialEq)]
struct Sem {
    cmp: Cmp,
    k: i64,
    swapped: bool,
    op: Op,
    term: Term,
    init: &'static str,
    ret_var: bool,
    lo: i64,
    bound: Bound,
    pred: Pred,
    negated: bool,
}

/// One instance's names.
#[derive(Debug, Clone, PartialEq)]
struct Names {
    fname: String,
    param: &'static str,
    var: &'static str,
    acc: &'static str,
}

/// A generated instance before its tests are checked: the correct and the buggy program and
/// the test calls.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Draft {
    pub template: Template,
    pub spec: String,
    pub entry_point: String,
    pub reference: String,
    pub buggy: String,
    pub bug: BugKind,
    /// The line the bug changed, as in the correct and in the buggy program (indented).
    pub good_line: String,
    pub bad_line: String,
    /// Why the buggy line is wrong, in words (the middle of the rationale).
    pub reason: String,
    /// Calls shown in the prompt (Python expressions).
    pub prompt_calls: Vec<String>,
    /// Further calls used only for grading.
    pub extra_calls: Vec<String>,
}

fn agg_words(kind: &TemplateKind) -> &'static str {
    match *kind {
        TemplateKind::List { agg, .. } => match agg {
            ListAgg::Sum => "sum",
            ListAgg::Product => "product",
            ListAgg::Count => "count",
            ListAgg::SumSquares => "sum of the squares",
        },
        TemplateKind::Range { agg, .. } => match agg {
            RangeAgg::Sum => "sum",
            RangeAgg::Product => "product",
            RangeAgg::SumSquares => "sum of the squares",
        },
        TemplateKind::Str { agg, .. } => match agg {
            StrAgg::Keep => "string",
            StrAgg::Count => "count",
        },
    }
}

fn spec_of(kind: &TemplateKind, names: &Names, sem: &Sem) -> String {
    let p = names.param;
    match *kind {
        TemplateKind::List { cmp, .. } => format!(
            "Return the {} of the numbers in {p} that are {} {}.",
            agg_words(kind),
            cmp.words(),
            sem.k
        ),
        TemplateKind::Range { bound, .. } => format!(
            "Return the {} of the integers from {} {} {p}.",
            agg_words(kind),
            sem.lo,
            bound.words()
        ),
        TemplateKind::Str { pred, negated, .. } => format!(
            "Return the {} of the characters of {p} that are {}{}.",
            agg_words(kind),
            if negated { "not " } else { "" },
            pred.words()
        ),
    }
}

fn render(kind: &TemplateKind, n: &Names, s: &Sem) -> Vec<String> {
    let (v, acc, p) = (n.var, n.acc, n.param);
    let term = match s.term {
        Term::Var => v.to_string(),
        Term::One => "1".to_string(),
        Term::Square => format!("{v} * {v}"),
    };
    let mut lines = vec![
        format!("def {}({p}):", n.fname),
        format!("    {acc} = {}", s.init),
    ];
    let update = if s.swapped && matches!(kind, TemplateKind::Str { .. }) {
        format!("{acc} = {term} {} {acc}", s.op.sym())
    } else {
        format!("{acc} = {acc} {} {term}", s.op.sym())
    };
    match kind {
        TemplateKind::List { .. } => {
            lines.push(format!("    for {v} in {p}:"));
            let cond = if s.swapped {
                format!("{} {} {v}", s.k, s.cmp.op())
            } else {
                format!("{v} {} {}", s.cmp.op(), s.k)
            };
            lines.push(format!("        if {cond}:"));
            lines.push(format!("            {update}"));
        }
        TemplateKind::Range { .. } => {
            let hi = match s.bound {
                Bound::Inclusive => format!("{p} + 1"),
                Bound::Exclusive => p.to_string(),
            };
            lines.push(format!("    for {v} in range({}, {hi}):", s.lo));
            lines.push(format!("        {update}"));
        }
        TemplateKind::Str { .. } => {
            lines.push(format!("    for {v} in {p}:"));
            let not = if s.negated { "not " } else { "" };
            lines.push(format!("        if {not}{v}.{}():", s.pred.method()));
            lines.push(format!("            {update}"));
        }
    }
    lines.push(format!("    return {}", if s.ret_var { v } else { acc }));
    lines
}

fn program(lines: &[String]) -> String {
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

/// The correct slot values of a template instance with constants `k` and `lo`.
fn correct_sem(kind: &TemplateKind, k: i64, lo: i64) -> Sem {
    let mut s = Sem {
        cmp: Cmp::Gt,
        k,
        swapped: false,
        op: Op::Add,
        term: Term::Var,
        init: "0",
        ret_var: false,
        lo,
        bound: Bound::Inclusive,
        pred: Pred::Digit,
        negated: false,
    };
    match *kind {
        TemplateKind::List { agg, cmp } => {
            s.cmp = cmp;
            match agg {
                ListAgg::Sum => {}
                ListAgg::Product => {
                    s.op = Op::Mul;
                    s.init = "1";
                }
                ListAgg::Count => s.term = Term::One,
                ListAgg::SumSquares => s.term = Term::Square,
            }
        }
        TemplateKind::Range { agg, bound } => {
            s.bound = bound;
            match agg {
                RangeAgg::Sum => {}
                RangeAgg::Product => {
                    s.op = Op::Mul;
                    s.init = "1";
                }
                RangeAgg::SumSquares => s.term = Term::Square,
            }
        }
        TemplateKind::Str { agg, pred, negated } => {
            s.pred = pred;
            s.negated = negated;
            match agg {
                StrAgg::Keep => s.init = "''",
                StrAgg::Count => s.term = Term::One,
            }
        }
    }
    s
}

/// Every bug that applies to an instance: (kind, buggy slot values, reason in words).
fn bugs(kind: &TemplateKind, n: &Names, good: &Sem) -> Vec<(BugKind, Sem, String)> {
    let mut out = Vec::new();
    let agg = agg_words(kind);
    let init_word = |init: &str| match init {
        "''" => "the empty string ''".to_string(),
        other => other.to_string(),
    };
    // Operator: + becomes -, * becomes + (a kept string has no arithmetic to get wrong).
    let bad_op = match good.op {
        Op::Mul => Op::Add,
        _ => Op::Sub,
    };
    if !matches!(
        kind,
        TemplateKind::Str {
            agg: StrAgg::Keep,
            ..
        }
    ) {
        out.push((
            BugKind::WrongOperator,
            Sem {
                op: bad_op,
                ..good.clone()
            },
            format!("the {agg} is built with `{}`", good.op.sym()),
        ));
    }
    // Initial value.
    let bad_init = match good.init {
        "0" => "1",
        "1" => "0",
        _ => "' '",
    };
    out.push((
        BugKind::WrongInit,
        Sem {
            init: bad_init,
            ..good.clone()
        },
        format!("the {agg} starts from {}", init_word(good.init)),
    ));
    out.push((
        BugKind::WrongReturn,
        Sem {
            ret_var: true,
            ..good.clone()
        },
        format!("the function must return {}, not {}", n.acc, n.var),
    ));
    match *kind {
        TemplateKind::List { cmp, .. } => {
            for &c in cmp.confusions() {
                out.push((
                    BugKind::WrongComparison,
                    Sem {
                        cmp: c,
                        ..good.clone()
                    },
                    format!("the numbers must be {} {}", cmp.words(), good.k),
                ));
            }
            for d in [-1, 1] {
                out.push((
                    BugKind::WrongConstant,
                    Sem {
                        k: good.k + d,
                        ..good.clone()
                    },
                    format!(
                        "the numbers must be {} {}, not {}",
                        cmp.words(),
                        good.k,
                        good.k + d
                    ),
                ));
            }
            out.push((
                BugKind::SwappedArguments,
                Sem {
                    swapped: true,
                    ..good.clone()
                },
                format!(
                    "the number {} comes first: {} {} {}",
                    n.var,
                    n.var,
                    cmp.words(),
                    good.k
                ),
            ));
        }
        TemplateKind::Range { bound, .. } => {
            let other = match bound {
                Bound::Inclusive => Bound::Exclusive,
                Bound::Exclusive => Bound::Inclusive,
            };
            out.push((
                BugKind::WrongBound,
                Sem {
                    bound: other,
                    ..good.clone()
                },
                format!("the integers go {} {}", bound.words(), n.param),
            ));
            for d in [-1, 1] {
                out.push((
                    BugKind::WrongConstant,
                    Sem {
                        lo: good.lo + d,
                        ..good.clone()
                    },
                    format!("the integers start from {}, not {}", good.lo, good.lo + d),
                ));
            }
        }
        TemplateKind::Str {
            agg: sagg,
            pred,
            negated,
        } => {
            for &p in pred.confusions() {
                out.push((
                    BugKind::WrongPredicate,
                    Sem {
                        pred: p,
                        ..good.clone()
                    },
                    format!("the characters must be {}", pred.words()),
                ));
            }
            out.push((
                BugKind::WrongNegation,
                Sem {
                    negated: !negated,
                    ..good.clone()
                },
                format!(
                    "the characters must {}be {}",
                    if negated { "not " } else { "" },
                    pred.words()
                ),
            ));
            if sagg == StrAgg::Keep {
                out.push((
                    BugKind::SwappedArguments,
                    Sem {
                        swapped: true,
                        ..good.clone()
                    },
                    format!(
                        "each character goes after the ones before it: {} first",
                        n.acc
                    ),
                ));
            }
        }
    }
    out
}

fn list_literal(xs: &[i64]) -> String {
    let items: Vec<String> = xs.iter().map(|x| x.to_string()).collect();
    format!("[{}]", items.join(", "))
}

const STR_CHARS: &[u8] = b"abxyzABXYZ0123456789";

/// `count` distinct calls of `fname` (fewer only when the input space is exhausted), none of
/// them in `taken`, which receives them.
fn calls(
    kind: &TemplateKind,
    fname: &str,
    rng: &mut Rng,
    count: usize,
    short: bool,
    taken: &mut Vec<String>,
) -> Vec<String> {
    let (min_len, max_len) = if short { (1, 4) } else { (0, 6) };
    let mut out = Vec::new();
    for _ in 0..200 {
        if out.len() == count {
            break;
        }
        let call = match kind {
            TemplateKind::List { .. } => {
                let len = rng.range(min_len, max_len) as usize;
                let xs: Vec<i64> = (0..len).map(|_| rng.range(0, 9)).collect();
                format!("{fname}({})", list_literal(&xs))
            }
            TemplateKind::Range { .. } => {
                let n = if short {
                    rng.range(2, 6)
                } else {
                    rng.range(0, 9)
                };
                format!("{fname}({n})")
            }
            TemplateKind::Str { .. } => {
                let len = rng.range(min_len, max_len + 1) as usize;
                let s: String = (0..len).map(|_| rng.pick(STR_CHARS) as char).collect();
                format!("{fname}('{s}')")
            }
        };
        if !taken.contains(&call) {
            taken.push(call.clone());
            out.push(call);
        }
    }
    out
}

/// Draw one instance of `template` (names, constants, one bug, test calls).
pub(crate) fn draft(template: &Template, rng: &mut Rng, naming: Naming) -> Draft {
    let kind = template.kind;
    let (params, vars): (&[&'static str], &[&'static str]) = match kind {
        TemplateKind::List { .. } => (&["xs", "nums", "values", "items"], &["x", "v", "n", "y"]),
        TemplateKind::Range { .. } => (&["n", "m", "limit", "top"], &["i", "j", "k", "x"]),
        TemplateKind::Str { .. } => (
            &["s", "text", "word", "line"],
            &["ch", "c", "letter", "char"],
        ),
    };
    let accs: &[&'static str] = &["total", "acc", "result", "res", "out"];
    let names = match naming {
        Naming::Varied => Names {
            fname: template.function_name(),
            param: rng.pick(params),
            var: rng.pick(vars),
            acc: rng.pick(accs),
        },
        Naming::Fixed => Names {
            fname: "f".to_string(),
            param: params[0],
            var: vars[0],
            acc: accs[0],
        },
    };
    let k = rng.range(1, 6);
    let lo = rng.range(1, 2);
    let good = correct_sem(&kind, k, lo);
    let options = bugs(&kind, &names, &good);
    let (bug, bad, reason) = options[rng.below(options.len())].clone();
    let good_lines = render(&kind, &names, &good);
    let bad_lines = render(&kind, &names, &bad);
    let (good_line, bad_line) = good_lines
        .iter()
        .zip(&bad_lines)
        .find(|(g, b)| g != b)
        .map(|(g, b)| (g.clone(), b.clone()))
        .unwrap_or_default();
    let mut taken = Vec::new();
    let prompt_calls = calls(&kind, &names.fname, rng, 3, true, &mut taken);
    let extra_calls = calls(&kind, &names.fname, rng, 7, false, &mut taken);
    Draft {
        template: template.clone(),
        spec: spec_of(&kind, &names, &good),
        entry_point: names.fname.clone(),
        reference: program(&good_lines),
        buggy: program(&bad_lines),
        bug,
        good_line,
        bad_line,
        reason,
        prompt_calls,
        extra_calls,
    }
}

/// The value the trace shows for the failing call: the last `__return__=...` (or the first
/// `__exception__ = ...`) of the function's lines, as written in the trace.
pub(crate) fn observed_in_trace(trace: &str) -> Option<String> {
    let body: Vec<&str> = trace
        .lines()
        .filter(|l| !l.starts_with("assert "))
        .collect();
    let find = |key: &str| {
        body.iter().rev().find_map(|l| {
            l.rfind(key).map(|at| {
                let rest = &l[at..];
                let end = rest.find(';').unwrap_or(rest.len());
                rest[..end].trim().to_string()
            })
        })
    };
    find("__return__=").or_else(|| find("__exception__"))
}

/// The hand-made rationale of a draft whose buggy program fails `failing_test` and whose
/// trace shows `observed`.
pub(crate) fn rationale(d: &Draft, failing_test: &str, observed: &str) -> String {
    let test = failing_test.trim();
    let (call, expected) = test
        .strip_prefix("assert ")
        .and_then(|t| t.rsplit_once(" == "))
        .map(|(c, e)| (c.trim(), e.trim()))
        .unwrap_or((test, "?"));
    format!(
        "On `{call}` the trace shows `{observed}`, expected {expected}. \
The line `{}` is wrong: {}. It should be `{}`.",
        d.bad_line.trim(),
        d.reason,
        d.good_line.trim()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_unique_and_every_draft_changes_one_line() {
        let ts = templates();
        assert_eq!(ts.len(), 46);
        let ids: std::collections::BTreeSet<_> = ts.iter().map(|t| t.id.clone()).collect();
        assert_eq!(ids.len(), ts.len());
        let mut rng = Rng::new(7, 0);
        for t in &ts {
            for i in 0..20 {
                let naming = if i % 2 == 0 {
                    Naming::Varied
                } else {
                    Naming::Fixed
                };
                let d = draft(t, &mut rng, naming);
                let differ = d
                    .reference
                    .lines()
                    .zip(d.buggy.lines())
                    .filter(|(a, b)| a != b)
                    .count();
                assert_eq!(differ, 1, "{}\n{}\n{}", t.id, d.reference, d.buggy);
                assert_eq!(d.reference.lines().count(), d.buggy.lines().count());
                assert!(d.reference.contains(&d.good_line));
                assert!(d.buggy.contains(&d.bad_line));
            }
        }
    }

    #[test]
    fn observed_value_comes_from_the_function_lines() {
        let t = "def f(xs):  # (0) xs=[1];\n    return 3  # (1) __return__=3;\n\nassert f([1]) == 4  # (2) __exception__ = AssertionError()";
        assert_eq!(observed_in_trace(t).as_deref(), Some("__return__=3"));
        let t = "def f(xs):  # (0) xs=[];\n    return x  # (1) __exception__ = NameError(\"name 'x' is not defined\");\n\nassert f([]) == 0";
        assert_eq!(
            observed_in_trace(t).as_deref(),
            Some("__exception__ = NameError(\"name 'x' is not defined\")")
        );
    }
}
