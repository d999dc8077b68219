//! Dialplan translation (OpenSIPS `dialplan` semantics).
//!
//! Rule sets are identified by `dpid`. Each rule has a priority (**smaller first**, as in
//! OpenSIPS; equal priorities: configuration order), a match operator (`exact` string
//! equality, or `regex` search), an optional case-insensitive flag, an optional time window
//! ([`crate::timerec`]), attributes (`premium`, `emergency`, ...) and an output:
//!
//! * `subst_exp` and `repl_exp` set: the part of the input matched by `subst_exp` is
//!   replaced by `repl_exp`, in which `\1`..`\9` are the groups of `subst_exp` (`\0` the whole
//!   match, `\\` a backslash). When `match_exp` matched but `subst_exp` does not, the
//!   translation fails (OpenSIPS behaviour).
//! * only `repl_exp` set: the output is `repl_exp` literally.
//! * neither: the output is the input (classification only, use the attributes).
//!
//! Regexes use the `regex` crate (linear-time matching) and are compiled once, with a bounded
//! compiled size ([`DialplanConfig::regex_size_limit`]) and a bounded pattern length, so no
//! table can make a translation slow or blow memory. Exact rules are a hash look-up.
//!
//! Typical uses: E.164 normalisation on the way in (`^0(\d+)` -> `+44\1`, `^00` -> `+`, local
//! numbers -> `+44<area>\1`) and a carrier's format on the way out (`^\+(\d+)` -> `00\1`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::SystemTime;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use crate::timerec::TimeRec;

/// Longest match/subst/repl expression accepted.
pub const MAX_EXPR_LEN: usize = 1024;

fn default_size_limit() -> usize {
    256 * 1024
}

fn default_tz() -> String {
    "UTC".into()
}

/// Dialplan configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DialplanConfig {
    /// Upper bound (bytes) on each compiled regex (`regex` crate size limit).
    #[serde(default = "default_size_limit")]
    pub regex_size_limit: usize,
    /// Time zone for rule time windows that do not name one.
    #[serde(default = "default_tz")]
    pub timezone: String,
    /// Rules of every rule set.
    #[serde(default)]
    pub rules: Vec<DialplanRuleConfig>,
}

impl Default for DialplanConfig {
    fn default() -> Self {
        DialplanConfig {
            regex_size_limit: default_size_limit(),
            timezone: default_tz(),
            rules: Vec::new(),
        }
    }
}

/// Match operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchOp {
    /// String equality (0).
    #[default]
    Exact,
    /// Regular-expression search (1).
    Regex,
}

/// One dialplan row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DialplanRuleConfig {
    /// Rule set.
    pub dpid: u32,
    /// Rule id (unique across the table).
    pub id: String,
    /// Smaller is tried first.
    #[serde(default)]
    pub priority: i32,
    /// Operator.
    #[serde(default)]
    pub match_op: MatchOp,
    /// String or regex to match.
    pub match_exp: String,
    /// Case-insensitive match.
    #[serde(default)]
    pub case_insensitive: bool,
    /// Regex whose match is replaced.
    #[serde(default)]
    pub subst_exp: Option<String>,
    /// Replacement (with `\1`..`\9` when `subst_exp` is set).
    #[serde(default)]
    pub repl_exp: Option<String>,
    /// Time window.
    #[serde(default)]
    pub timerec: Option<String>,
    /// Time zone of the window.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Attributes returned on a match.
    #[serde(default)]
    pub attrs: String,
    /// Not loaded.
    #[serde(default)]
    pub disabled: bool,
}

/// A dialplan refused, naming the rule at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dialplan rule {id:?} (dpid {dpid}): {message}")]
pub struct DialplanError {
    /// Rule set.
    pub dpid: u32,
    /// Rule id.
    pub id: String,
    /// What is wrong.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ReplPart {
    Lit(Box<str>),
    Group(u8),
}

#[derive(Debug, Clone)]
enum Output {
    Same,
    Literal(Box<str>),
    Subst { re: Regex, repl: Box<[ReplPart]> },
}

#[derive(Debug, Clone)]
struct DpRule {
    id: Box<str>,
    priority: i32,
    order: u32,
    matcher: Option<Regex>,
    timerec: Option<TimeRec>,
    output: Output,
    attrs: Box<str>,
}

#[derive(Debug, Clone, Default)]
struct RuleSet {
    /// exact (case-sensitive) match expression -> rule indices sorted by (priority, order)
    exact: HashMap<Box<str>, Vec<u32>>,
    /// regex (and case-insensitive exact) rules sorted by (priority, order)
    regex: Vec<u32>,
}

/// The result of a translation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translation<'a> {
    /// Translated string (borrowed when unchanged or a literal).
    pub output: Cow<'a, str>,
    /// Attributes of the rule.
    pub attrs: &'a str,
    /// Id of the rule.
    pub rule_id: &'a str,
}

/// The compiled, immutable dialplan.
#[derive(Debug, Clone, Default)]
pub struct Dialplan {
    rules: Vec<DpRule>,
    sets: HashMap<u32, RuleSet>,
}

fn parse_repl(s: &str, groups: usize) -> Result<Box<[ReplPart]>, String> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            lit.push(c);
            continue;
        }
        match chars.next() {
            Some(d @ '0'..='9') => {
                let g = d as u8 - b'0';
                if usize::from(g) > groups {
                    return Err(format!(
                        "repl_exp refers to group {g}, subst_exp has {groups}"
                    ));
                }
                if !lit.is_empty() {
                    parts.push(ReplPart::Lit(std::mem::take(&mut lit).into()));
                }
                parts.push(ReplPart::Group(g));
            }
            Some(other) => lit.push(other),
            None => lit.push('\\'),
        }
    }
    if !lit.is_empty() {
        parts.push(ReplPart::Lit(lit.into()));
    }
    Ok(parts.into())
}

impl Dialplan {
    /// Validates and compiles the rules.
    pub fn compile(cfg: &DialplanConfig) -> Result<Dialplan, DialplanError> {
        let mut dp = Dialplan::default();
        let mut ids = std::collections::HashSet::new();
        for (order, r) in cfg.rules.iter().enumerate() {
            let e = |message: String| DialplanError {
                dpid: r.dpid,
                id: r.id.clone(),
                message,
            };
            if r.id.trim().is_empty() {
                return Err(e("empty id".into()));
            }
            if !ids.insert(r.id.as_str()) {
                return Err(e("duplicate id".into()));
            }
            if r.disabled {
                continue;
            }
            for x in [
                Some(&r.match_exp),
                r.subst_exp.as_ref(),
                r.repl_exp.as_ref(),
            ]
            .into_iter()
            .flatten()
            {
                if x.len() > MAX_EXPR_LEN {
                    return Err(e(format!("expression longer than {MAX_EXPR_LEN}")));
                }
            }
            let build = |pat: &str, ci: bool| {
                RegexBuilder::new(pat)
                    .case_insensitive(ci)
                    .size_limit(cfg.regex_size_limit)
                    .dfa_size_limit(cfg.regex_size_limit)
                    .nest_limit(64)
                    .build()
                    .map_err(|x| e(format!("bad regex {pat:?}: {x}")))
            };
            let matcher = match (r.match_op, r.case_insensitive) {
                (MatchOp::Exact, false) => None,
                (MatchOp::Exact, true) => {
                    Some(build(&format!("^{}$", regex::escape(&r.match_exp)), true)?)
                }
                (MatchOp::Regex, ci) => Some(build(&r.match_exp, ci)?),
            };
            let output = match (&r.subst_exp, &r.repl_exp) {
                (Some(s), Some(repl)) if !s.is_empty() => {
                    let re = build(s, r.case_insensitive)?;
                    let groups = re.captures_len() - 1;
                    let repl = parse_repl(repl, groups).map_err(e)?;
                    Output::Subst { re, repl }
                }
                (Some(s), None) if !s.is_empty() => {
                    return Err(e("subst_exp without repl_exp".into()));
                }
                (_, Some(repl)) => Output::Literal(repl.as_str().into()),
                (_, None) => Output::Same,
            };
            let timerec = match &r.timerec {
                Some(s) if !s.trim().is_empty() => Some(
                    TimeRec::parse(s, r.timezone.as_deref().unwrap_or(&cfg.timezone))
                        .map_err(|x| e(x.to_string()))?,
                ),
                _ => None,
            };
            let idx = dp.rules.len() as u32;
            let set = dp.sets.entry(r.dpid).or_default();
            if matcher.is_none() {
                set.exact
                    .entry(r.match_exp.as_str().into())
                    .or_default()
                    .push(idx);
            } else {
                set.regex.push(idx);
            }
            dp.rules.push(DpRule {
                id: r.id.as_str().into(),
                priority: r.priority,
                order: order as u32,
                matcher,
                timerec,
                output,
                attrs: r.attrs.as_str().into(),
            });
        }
        let key = |rules: &[DpRule], i: u32| {
            rules
                .get(i as usize)
                .map(|r| (r.priority, r.order))
                .unwrap_or((i32::MAX, u32::MAX))
        };
        let rules = &dp.rules;
        for set in dp.sets.values_mut() {
            set.regex.sort_by_key(|&i| key(rules, i));
            for v in set.exact.values_mut() {
                v.sort_by_key(|&i| key(rules, i));
            }
        }
        Ok(dp)
    }

    /// Whether rule set `dpid` exists.
    pub fn has_set(&self, dpid: u32) -> bool {
        self.sets.contains_key(&dpid)
    }

    /// Translates `input` with rule set `dpid` at `now`: the first matching rule by priority.
    /// `None` when no rule matches, or when the matching rule's substitution does not apply.
    pub fn translate<'a>(
        &'a self,
        dpid: u32,
        input: &'a str,
        now: SystemTime,
    ) -> Option<Translation<'a>> {
        let set = self.sets.get(&dpid)?;
        let mut secs: Option<i64> = None;
        let mut active = |r: &DpRule| match &r.timerec {
            None => true,
            Some(tr) => {
                let s = *secs.get_or_insert_with(|| unix(now));
                tr.matches_unix(s)
            }
        };
        let exact = set.exact.get(input).and_then(|v| {
            v.iter()
                .copied()
                .find(|&i| self.rules.get(i as usize).is_some_and(&mut active))
        });
        let exact_key = exact
            .and_then(|i| self.rules.get(i as usize))
            .map(|r| (r.priority, r.order));
        let mut chosen = exact;
        for &i in &set.regex {
            let Some(r) = self.rules.get(i as usize) else {
                continue;
            };
            if let Some(k) = exact_key
                && (r.priority, r.order) > k
            {
                break;
            }
            if r.matcher.as_ref().is_some_and(|m| m.is_match(input)) && active(r) {
                chosen = Some(i);
                break;
            }
        }
        let rule = self.rules.get(chosen? as usize)?;
        let output = match &rule.output {
            Output::Same => Cow::Borrowed(input),
            Output::Literal(l) => Cow::Borrowed(&**l),
            Output::Subst { re, repl } => {
                let caps = re.captures(input)?;
                let whole = caps.get(0)?;
                let mut out = String::with_capacity(input.len() + 16);
                out.push_str(input.get(..whole.start()).unwrap_or(""));
                for p in repl.iter() {
                    match p {
                        ReplPart::Lit(l) => out.push_str(l),
                        ReplPart::Group(g) => {
                            if let Some(m) = caps.get(usize::from(*g)) {
                                out.push_str(m.as_str());
                            }
                        }
                    }
                }
                out.push_str(input.get(whole.end()..).unwrap_or(""));
                Cow::Owned(out)
            }
        };
        Some(Translation {
            output,
            attrs: &rule.attrs,
            rule_id: &rule.id,
        })
    }
}

/// Whether `s` is a plausible E.164 number (`+` then 2..=15 digits, no leading zero): check a
/// translation's output before routing on it, so a rule that produces garbage gets the call
/// refused instead of forwarded.
pub fn is_e164(s: &str) -> bool {
    let Some(d) = s.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
}

/// Whether `s` is a plausible dial string for a carrier (1..=32 of `0-9`, `+` only first,
/// `*`, `#`).
pub fn is_dial_string(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes()
            .enumerate()
            .all(|(i, b)| b.is_ascii_digit() || b == b'*' || b == b'#' || (b == b'+' && i == 0))
}

fn unix(now: SystemTime) -> i64 {
    now.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const PLAN: &str = r##"
[[rules]]
dpid = 1
id = "intl"
priority = 5
match_op = "regex"
match_exp = "^00[1-9]"
subst_exp = "^00"
repl_exp = "+"

[[rules]]
dpid = 1
id = "national"
priority = 10
match_op = "regex"
match_exp = '^0[1-9]\d{8,9}$'
subst_exp = '^0(\d+)$'
repl_exp = '+44\1'

[[rules]]
dpid = 1
id = "local-london"
priority = 20
match_op = "regex"
match_exp = '^[2-9]\d{7}$'
subst_exp = '^(.*)$'
repl_exp = '+4420\1'

[[rules]]
dpid = 1
id = "uk-sos"
priority = 1
match_exp = "999"
repl_exp = "112"
attrs = "emergency"

[[rules]]
dpid = 1
id = "premium"
priority = 0
match_op = "regex"
match_exp = '^09'
attrs = "premium"

[[rules]]
dpid = 2
id = "out-00"
match_op = "regex"
match_exp = '^\+'
subst_exp = '^\+(\d+)$'
repl_exp = '00\1'

[[rules]]
dpid = 3
id = "ci"
match_exp = "ABC"
case_insensitive = true
repl_exp = "x"

[[rules]]
dpid = 3
id = "office-hours"
priority = -1
match_exp = "100"
repl_exp = "+441234100"
timerec = "20240101T090000|8H|WEEKLY|||MO,TU,WE,TH,FR"

[[rules]]
dpid = 3
id = "after-hours"
match_exp = "100"
repl_exp = "+441234999"

[[rules]]
dpid = 3
id = "broken-subst"
priority = 5
match_op = "regex"
match_exp = "^7"
subst_exp = "^8"
repl_exp = "y"

[[rules]]
dpid = 3
id = "off"
disabled = true
match_exp = "555"
"##;

    fn plan() -> Dialplan {
        Dialplan::compile(&toml::from_str(PLAN).unwrap()).unwrap()
    }

    fn now() -> SystemTime {
        // 2024-01-10 12:00 UTC, a Wednesday
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_888_000)
    }

    fn tr(dp: &Dialplan, id: u32, s: &str) -> Option<(String, String, String)> {
        dp.translate(id, s, now()).map(|t| {
            (
                t.output.into_owned(),
                t.attrs.to_owned(),
                t.rule_id.to_owned(),
            )
        })
    }

    #[test]
    fn e164_normalisation_in() {
        let dp = plan();
        assert_eq!(tr(&dp, 1, "02079460000").unwrap().0, "+442079460000");
        assert_eq!(tr(&dp, 1, "0033123456789").unwrap().0, "+33123456789");
        assert_eq!(tr(&dp, 1, "79460000").unwrap().0, "+442079460000");
        assert_eq!(
            tr(&dp, 1, "999").unwrap(),
            ("112".into(), "emergency".into(), "uk-sos".into())
        );
        // classification only: output = input, attrs returned
        let p = tr(&dp, 1, "0909123456").unwrap();
        assert_eq!(p, ("0909123456".into(), "premium".into(), "premium".into()));
        assert!(tr(&dp, 1, "12").is_none());
        assert!(tr(&dp, 9, "02079460000").is_none());
        assert!(!dp.has_set(9));
    }

    #[test]
    fn carrier_format_out() {
        let dp = plan();
        assert_eq!(tr(&dp, 2, "+442079460000").unwrap().0, "00442079460000");
        assert!(tr(&dp, 2, "+44abc").is_none()); // matched, subst fails
    }

    #[test]
    fn priority_time_window_and_flags() {
        let dp = plan();
        assert_eq!(tr(&dp, 3, "100").unwrap().2, "office-hours");
        let night = SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_844_800 + 3600);
        assert_eq!(
            dp.translate(3, "100", night).unwrap().rule_id,
            "after-hours"
        );
        assert_eq!(tr(&dp, 3, "abc").unwrap().0, "x");
        assert!(tr(&dp, 3, "7").is_none()); // subst does not match: fails like OpenSIPS
        assert!(tr(&dp, 3, "555").is_none()); // disabled
    }

    #[test]
    fn borrowed_outputs_do_not_allocate() {
        let dp = plan();
        let t = dp.translate(1, "999", now()).unwrap();
        assert!(matches!(t.output, Cow::Borrowed(_)));
        let t = dp.translate(1, "0909", now()).unwrap();
        assert!(matches!(t.output, Cow::Borrowed(_)));
    }

    #[test]
    fn back_references_and_escapes() {
        let dp = Dialplan::compile(&DialplanConfig {
            rules: vec![DialplanRuleConfig {
                dpid: 1,
                id: "swap".into(),
                priority: 0,
                match_op: MatchOp::Regex,
                match_exp: "-".into(),
                case_insensitive: false,
                subst_exp: Some(r"(\d+)-(\d+)".into()),
                repl_exp: Some(r"\2\\\1[\0]".into()),
                timerec: None,
                timezone: None,
                attrs: String::new(),
                disabled: false,
            }],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(tr(&dp, 1, "a12-34b").unwrap().0, r"a34\12[12-34]b");
    }

    #[test]
    fn bad_rules_are_refused_with_their_id() {
        let base: DialplanConfig = toml::from_str(PLAN).unwrap();
        let mut c = base.clone();
        c.rules[1].match_exp = "(".into();
        let e = Dialplan::compile(&c).unwrap_err();
        assert_eq!(e.id, "national");
        let mut c = base.clone();
        c.rules[1].repl_exp = Some(r"+44\3".into());
        assert!(
            Dialplan::compile(&c)
                .unwrap_err()
                .message
                .contains("group 3")
        );
        let mut c = base.clone();
        c.rules[0].id = "national".into();
        assert!(Dialplan::compile(&c).is_err());
        let mut c = base.clone();
        c.rules[0].repl_exp = None;
        assert!(Dialplan::compile(&c).is_err());
        // a regex whose compiled form is too large is refused, not built
        let mut c = base.clone();
        c.regex_size_limit = 10_000;
        c.rules[0].match_exp = r"\w{1000}".into();
        assert!(
            Dialplan::compile(&c)
                .unwrap_err()
                .message
                .contains("bad regex")
        );
        let mut c = base;
        c.rules[0].match_exp = "1".repeat(MAX_EXPR_LEN + 1);
        assert!(Dialplan::compile(&c).is_err());
        assert!(
            toml::from_str::<DialplanConfig>("[[rules]]\ndpid=1\nid='x'\nmatch_exp='1'\nfoo=1")
                .is_err()
        );
    }

    #[test]
    fn garbage_checks() {
        assert!(is_e164("+442079460000"));
        for bad in [
            "442079460000",
            "+",
            "+0441",
            "+44a",
            "+1234567890123456",
            "+4",
        ] {
            assert!(!is_e164(bad), "{bad}");
        }
        assert!(is_dial_string("#31#0207"));
        assert!(is_dial_string("+44"));
        assert!(!is_dial_string("4+4"));
        assert!(!is_dial_string(""));
        assert!(!is_dial_string("12;x"));
    }

    #[test]
    fn long_inputs_stay_linear() {
        let dp = plan();
        let long = "0".repeat(100_000);
        let t0 = std::time::Instant::now();
        let _ = dp.translate(1, &long, now());
        assert!(t0.elapsed() < Duration::from_secs(1));
    }
}
