//! Lua 5.4 patterns, reimplemented with a step budget.
//!
//! The instruction-count hook cannot interrupt a C function, and the stock matcher
//! (`lstrlib.c`) backtracks exponentially on patterns such as `(a*)*b` or `.-.-.-.-x`. This
//! module is a faithful port of the stock matcher (same syntax, same results, same error
//! texts) whose every step calls [`Budget::step`]; when the budget says stop, matching ends
//! with [`MatchError::Budget`] and the caller turns that into the call's timeout.
//!
//! Everything works on bytes, like Lua: classes use the C locale.

/// Most captures one pattern may have (`LUA_MAXCAPTURES`).
const MAX_CAPTURES: usize = 32;
/// Deepest matcher recursion (`MAXCCALLS` in `lstrlib.c`).
const MAX_DEPTH: u32 = 200;

/// Decides, step by step, whether matching may go on.
pub(crate) trait Budget {
    /// One unit of matching work; `false` stops the match.
    fn step(&self) -> bool;
}

/// Why a match ended without a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MatchError {
    /// A malformed pattern (the message is Lua's).
    Pattern(String),
    /// The budget ran out.
    Budget,
}

fn malformed(message: &str) -> MatchError {
    MatchError::Pattern(message.to_string())
}

/// The length of a capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CapLen {
    /// Still open.
    Unfinished,
    /// A position capture `()`.
    Position,
    /// A closed capture of this many bytes.
    Len(usize),
}

/// One capture: start offset in the subject and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Capture {
    /// Byte offset of the capture's start.
    pub start: usize,
    /// Length or kind.
    pub len: CapLen,
}

/// A captured value, as Lua would push it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CapValue {
    /// A substring `start..end` of the subject.
    Text(usize, usize),
    /// A position capture: 1-based index.
    Position(usize),
}

/// The matching machine of one `find`/`match`/`gmatch`/`gsub` call.
pub(crate) struct Matcher<'a, B: Budget> {
    src: &'a [u8],
    pat: &'a [u8],
    level: usize,
    caps: [Capture; MAX_CAPTURES],
    depth: u32,
    budget: &'a B,
}

fn at(bytes: &[u8], i: usize) -> Option<u8> {
    bytes.get(i).copied()
}

fn class_matches(c: u8, class: u8) -> bool {
    let res = match class.to_ascii_lowercase() {
        b'a' => c.is_ascii_alphabetic(),
        b'c' => c.is_ascii_control(),
        b'd' => c.is_ascii_digit(),
        b'g' => c.is_ascii_graphic(),
        b'l' => c.is_ascii_lowercase(),
        b'p' => c.is_ascii_punctuation(),
        b's' => matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c),
        b'u' => c.is_ascii_uppercase(),
        b'w' => c.is_ascii_alphanumeric(),
        b'x' => c.is_ascii_hexdigit(),
        _ => return class == c,
    };
    if class.is_ascii_uppercase() {
        !res
    } else {
        res
    }
}

/// True when `pat` has no magic characters (`find` may then search plainly).
pub(crate) fn no_specials(pat: &[u8]) -> bool {
    !pat.iter().any(|c| b"^$*+?.([%-".contains(c))
}

impl<'a, B: Budget> Matcher<'a, B> {
    /// A matcher of `pat` over `src`.
    pub(crate) fn new(src: &'a [u8], pat: &'a [u8], budget: &'a B) -> Matcher<'a, B> {
        Matcher {
            src,
            pat,
            level: 0,
            caps: [Capture {
                start: 0,
                len: CapLen::Unfinished,
            }; MAX_CAPTURES],
            depth: MAX_DEPTH,
            budget,
        }
    }

    /// Resets the captures before a new attempt (`reprepstate`).
    pub(crate) fn reset(&mut self) {
        self.level = 0;
        self.depth = MAX_DEPTH;
    }

    fn step(&self) -> Result<(), MatchError> {
        if self.budget.step() {
            Ok(())
        } else {
            Err(MatchError::Budget)
        }
    }

    /// Offset just past the single-character class starting at `p`.
    fn class_end(&self, p: usize) -> Result<usize, MatchError> {
        let c = at(self.pat, p);
        let mut p = p + 1;
        match c {
            Some(b'%') => {
                if p >= self.pat.len() {
                    return Err(malformed("malformed pattern (ends with '%')"));
                }
                Ok(p + 1)
            }
            Some(b'[') => {
                if at(self.pat, p) == Some(b'^') {
                    p += 1;
                }
                loop {
                    // Look for a `]`; the first character of the set may be a `]`.
                    if p >= self.pat.len() {
                        return Err(malformed("malformed pattern (missing ']')"));
                    }
                    let c = at(self.pat, p);
                    p += 1;
                    if c == Some(b'%') && p < self.pat.len() {
                        p += 1;
                    }
                    if at(self.pat, p) == Some(b']') {
                        return Ok(p + 1);
                    }
                }
            }
            _ => Ok(p),
        }
    }

    /// Does `c` match the set `[...]` spanning `p..=ec` (`ec` at the closing `]`)?
    fn bracket_class(&self, c: u8, mut p: usize, ec: usize) -> bool {
        let mut sig = true;
        if at(self.pat, p + 1) == Some(b'^') {
            sig = false;
            p += 1;
        }
        loop {
            p += 1;
            if p >= ec {
                break;
            }
            let Some(pc) = at(self.pat, p) else { break };
            if pc == b'%' {
                p += 1;
                if let Some(class) = at(self.pat, p)
                    && class_matches(c, class)
                {
                    return sig;
                }
            } else if at(self.pat, p + 1) == Some(b'-') && p + 2 < ec {
                p += 2;
                if let Some(hi) = at(self.pat, p)
                    && pc <= c
                    && c <= hi
                {
                    return sig;
                }
            } else if pc == c {
                return sig;
            }
        }
        !sig
    }

    fn single_match(&self, s: usize, p: usize, ep: usize) -> bool {
        let Some(c) = at(self.src, s) else {
            return false;
        };
        match at(self.pat, p) {
            Some(b'.') => true,
            Some(b'%') => at(self.pat, p + 1).is_some_and(|class| class_matches(c, class)),
            Some(b'[') => self.bracket_class(c, p, ep.saturating_sub(1)),
            Some(pc) => pc == c,
            None => false,
        }
    }

    /// Matches the pattern from `p` against the subject from `s`; the end of the match.
    pub(crate) fn do_match(&mut self, s: usize, p: usize) -> Result<Option<usize>, MatchError> {
        if self.depth == 0 {
            return Err(malformed("pattern too complex"));
        }
        self.depth -= 1;
        let result = self.match_inner(s, p);
        self.depth += 1;
        result
    }

    fn match_inner(&mut self, mut s: usize, mut p: usize) -> Result<Option<usize>, MatchError> {
        loop {
            self.step()?;
            let Some(pc) = at(self.pat, p) else {
                return Ok(Some(s));
            };
            match pc {
                b'(' => {
                    return if at(self.pat, p + 1) == Some(b')') {
                        self.start_capture(s, p + 2, CapLen::Position)
                    } else {
                        self.start_capture(s, p + 1, CapLen::Unfinished)
                    };
                }
                b')' => return self.end_capture(s, p + 1),
                b'$' if p + 1 == self.pat.len() => {
                    return Ok((s == self.src.len()).then_some(s));
                }
                b'%' if at(self.pat, p + 1) == Some(b'b') => match self.match_balance(s, p + 2)? {
                    Some(end) => {
                        s = end;
                        p += 4;
                        continue;
                    }
                    None => return Ok(None),
                },
                b'%' if at(self.pat, p + 1) == Some(b'f') => {
                    p += 2;
                    if at(self.pat, p) != Some(b'[') {
                        return Err(malformed("missing '[' after '%f' in pattern"));
                    }
                    let ep = self.class_end(p)?;
                    let prev = if s == 0 {
                        0
                    } else {
                        at(self.src, s - 1).unwrap_or(0)
                    };
                    let cur = at(self.src, s).unwrap_or(0);
                    let last = ep.saturating_sub(1);
                    if !self.bracket_class(prev, p, last) && self.bracket_class(cur, p, last) {
                        p = ep;
                        continue;
                    }
                    return Ok(None);
                }
                b'%' if at(self.pat, p + 1).is_some_and(|d| d.is_ascii_digit()) => {
                    let digit = at(self.pat, p + 1).unwrap_or(b'0');
                    match self.match_capture(s, digit)? {
                        Some(end) => {
                            s = end;
                            p += 2;
                            continue;
                        }
                        None => return Ok(None),
                    }
                }
                _ => {
                    let ep = self.class_end(p)?;
                    let quantifier = at(self.pat, ep);
                    if !self.single_match(s, p, ep) {
                        if matches!(quantifier, Some(b'*' | b'?' | b'-')) {
                            p = ep + 1;
                            continue;
                        }
                        return Ok(None);
                    }
                    match quantifier {
                        Some(b'?') => {
                            if let Some(end) = self.do_match(s + 1, ep + 1)? {
                                return Ok(Some(end));
                            }
                            p = ep + 1;
                        }
                        Some(b'+') => return self.max_expand(s + 1, p, ep),
                        Some(b'*') => return self.max_expand(s, p, ep),
                        Some(b'-') => return self.min_expand(s, p, ep),
                        _ => {
                            s += 1;
                            p = ep;
                        }
                    }
                }
            }
        }
    }

    fn max_expand(&mut self, s: usize, p: usize, ep: usize) -> Result<Option<usize>, MatchError> {
        let mut i = 0;
        while self.single_match(s + i, p, ep) {
            self.step()?;
            i += 1;
        }
        loop {
            if let Some(end) = self.do_match(s + i, ep + 1)? {
                return Ok(Some(end));
            }
            if i == 0 {
                return Ok(None);
            }
            i -= 1;
        }
    }

    fn min_expand(
        &mut self,
        mut s: usize,
        p: usize,
        ep: usize,
    ) -> Result<Option<usize>, MatchError> {
        loop {
            if let Some(end) = self.do_match(s, ep + 1)? {
                return Ok(Some(end));
            }
            if self.single_match(s, p, ep) {
                s += 1;
            } else {
                return Ok(None);
            }
        }
    }

    fn start_capture(
        &mut self,
        s: usize,
        p: usize,
        what: CapLen,
    ) -> Result<Option<usize>, MatchError> {
        let level = self.level;
        let Some(slot) = self.caps.get_mut(level) else {
            return Err(malformed("too many captures"));
        };
        *slot = Capture {
            start: s,
            len: what,
        };
        self.level += 1;
        let result = self.do_match(s, p)?;
        if result.is_none() {
            self.level -= 1;
        }
        Ok(result)
    }

    fn end_capture(&mut self, s: usize, p: usize) -> Result<Option<usize>, MatchError> {
        let open = (0..self.level)
            .rev()
            .find(|&l| {
                self.caps
                    .get(l)
                    .is_some_and(|c| c.len == CapLen::Unfinished)
            })
            .ok_or_else(|| malformed("invalid pattern capture"))?;
        if let Some(cap) = self.caps.get_mut(open) {
            cap.len = CapLen::Len(s - cap.start);
        }
        let result = self.do_match(s, p)?;
        if result.is_none()
            && let Some(cap) = self.caps.get_mut(open)
        {
            cap.len = CapLen::Unfinished;
        }
        Ok(result)
    }

    fn match_capture(&mut self, s: usize, digit: u8) -> Result<Option<usize>, MatchError> {
        let index = i32::from(digit) - i32::from(b'1');
        let cap = usize::try_from(index)
            .ok()
            .filter(|&l| l < self.level)
            .and_then(|l| self.caps.get(l).copied())
            .filter(|c| c.len != CapLen::Unfinished)
            .ok_or_else(|| MatchError::Pattern(format!("invalid capture index %{}", index + 1)))?;
        let len = match cap.len {
            CapLen::Len(len) => len,
            _ => 0,
        };
        let captured = self.src.get(cap.start..cap.start + len);
        let here = self.src.get(s..s + len);
        match (captured, here) {
            (Some(a), Some(b)) if a == b => Ok(Some(s + len)),
            _ => Ok(None),
        }
    }

    fn match_balance(&mut self, s: usize, p: usize) -> Result<Option<usize>, MatchError> {
        let (Some(open), Some(close)) = (at(self.pat, p), at(self.pat, p + 1)) else {
            return Err(malformed("malformed pattern (missing arguments to '%b')"));
        };
        if at(self.src, s) != Some(open) {
            return Ok(None);
        }
        let mut depth = 1usize;
        let mut i = s + 1;
        while let Some(c) = at(self.src, i) {
            self.step()?;
            if c == close {
                depth -= 1;
                if depth == 0 {
                    return Ok(Some(i + 1));
                }
            } else if c == open {
                depth += 1;
            }
            i += 1;
        }
        Ok(None)
    }

    /// The number of values a successful match yields: its captures, or the whole match
    /// when it has none (`whole` false: none, as `find` wants).
    pub(crate) fn capture_count(&self, whole: bool) -> usize {
        if self.level == 0 && whole {
            1
        } else {
            self.level
        }
    }

    /// Capture `i` of the match `s..e` (`get_onecapture`).
    pub(crate) fn capture(&self, i: usize, s: usize, e: usize) -> Result<CapValue, MatchError> {
        if i >= self.level {
            if i != 0 {
                return Err(MatchError::Pattern(format!(
                    "invalid capture index %{}",
                    i + 1
                )));
            }
            return Ok(CapValue::Text(s, e));
        }
        let cap = self
            .caps
            .get(i)
            .ok_or_else(|| malformed("invalid capture index"))?;
        match cap.len {
            CapLen::Unfinished => Err(malformed("unfinished capture")),
            CapLen::Position => Ok(CapValue::Position(cap.start + 1)),
            CapLen::Len(len) => Ok(CapValue::Text(cap.start, cap.start + len)),
        }
    }
}

/// Plain substring search from `init`, with the budget charged for the work.
pub(crate) fn plain_find<B: Budget>(
    src: &[u8],
    pat: &[u8],
    init: usize,
    budget: &B,
) -> Result<Option<usize>, MatchError> {
    if pat.is_empty() {
        return Ok(Some(init));
    }
    if pat.len() > src.len().saturating_sub(init) {
        return Ok(None);
    }
    let cost = 1 + pat.len() / 64;
    let last = src.len() - pat.len();
    let mut i = init;
    while i <= last {
        for _ in 0..cost {
            if !budget.step() {
                return Err(MatchError::Budget);
            }
        }
        if src.get(i..i + pat.len()) == Some(pat) {
            return Ok(Some(i));
        }
        i += 1;
    }
    Ok(None)
}

/// 5.4's `posrelatI`: a 1-based start position from a possibly negative argument.
pub(crate) fn start_position(pos: i64, len: usize) -> usize {
    let len_i = i64::try_from(len).unwrap_or(i64::MAX);
    if pos > 0 {
        usize::try_from(pos).unwrap_or(usize::MAX)
    } else if pos == 0 || pos < -len_i {
        1
    } else {
        usize::try_from(len_i + pos + 1).unwrap_or(1)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    struct Steps(Cell<u64>);
    impl Budget for Steps {
        fn step(&self) -> bool {
            let left = self.0.get();
            self.0.set(left.saturating_sub(1));
            left > 0
        }
    }

    fn find(src: &str, pat: &str) -> Result<Option<(usize, usize)>, MatchError> {
        let budget = Steps(Cell::new(1_000_000));
        let mut m = Matcher::new(src.as_bytes(), pat.as_bytes(), &budget);
        let (anchor, p) = match pat.strip_prefix('^') {
            Some(_) => (true, 1),
            None => (false, 0),
        };
        let mut s = 0;
        loop {
            m.reset();
            if let Some(e) = m.do_match(s, p)? {
                return Ok(Some((s, e)));
            }
            s += 1;
            if anchor || s > src.len() {
                return Ok(None);
            }
        }
    }

    #[test]
    fn matches_like_lua() {
        assert_eq!(find("hello world", "o w"), Ok(Some((4, 7))));
        assert_eq!(find("hello", "l+"), Ok(Some((2, 4))));
        assert_eq!(find("hello", "^h.-o$"), Ok(Some((0, 5))));
        assert_eq!(find("hello", "^e"), Ok(None));
        assert_eq!(find("x = (a(b)c)", "%b()"), Ok(Some((4, 11))));
        assert_eq!(find("THE (quick) fox", "%f[%a]%a+"), Ok(Some((0, 3))));
        assert_eq!(find("abcabc", "(abc)%1"), Ok(Some((0, 6))));
        assert_eq!(find("key=val", "[%w_]+="), Ok(Some((0, 4))));
        assert_eq!(find("a]b", "[]]"), Ok(Some((1, 2))));
        assert_eq!(find("a-b", "[a%-]+"), Ok(Some((0, 2))));
        assert_eq!(find("abc", "[^a]"), Ok(Some((1, 2))));
        assert_eq!(find("2024", "%d%d?%d*"), Ok(Some((0, 4))));
        assert_eq!(find("", ""), Ok(Some((0, 0))));
    }

    #[test]
    fn malformed_patterns_are_errors() {
        assert!(matches!(find("a", "%"), Err(MatchError::Pattern(_))));
        assert!(matches!(find("a", "[a"), Err(MatchError::Pattern(_))));
        assert!(matches!(find("a", "a)"), Err(MatchError::Pattern(_))));
        assert!(matches!(find("a", "%1"), Err(MatchError::Pattern(_))));
        assert!(matches!(find("a", "%f"), Err(MatchError::Pattern(_))));
    }

    #[test]
    fn catastrophic_patterns_run_out_of_budget() {
        // Lua quantifiers apply to single classes: `(a*)*b` is quadratic, not exponential.
        let src = "a".repeat(30);
        assert_eq!(find(&src, "(a*)*b"), Ok(None));
        assert_eq!(find(&src, "a*a*a*a*a*a*a*a*a*a*b"), Err(MatchError::Budget));
        let src = "a".repeat(10_000);
        assert_eq!(find(&src, ".-.-.-.-x"), Err(MatchError::Budget));
    }
}
