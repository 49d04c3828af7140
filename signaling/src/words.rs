//! The sensitive-word filter: one Aho–Corasick automaton over the editable word list. A word
//! marked "block" refuses the whole message; any other hit is masked with ＊.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

/// What to do with a message containing a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WordAction {
    Mask,
    Block,
}

/// The outcome of filtering one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filtered {
    Clean,
    Masked(String),
    Blocked,
}

#[derive(Debug, Clone)]
pub struct WordFilter {
    automaton: Option<AhoCorasick>,
    actions: Vec<WordAction>,
}

impl Default for WordFilter {
    fn default() -> Self {
        Self::new(Vec::<(String, WordAction)>::new())
    }
}

impl WordFilter {
    /// Builds the automaton; matching is case-insensitive for ASCII and prefers the longest word.
    pub fn new(words: impl IntoIterator<Item = (String, WordAction)>) -> Self {
        let (patterns, actions): (Vec<String>, Vec<WordAction>) = words
            .into_iter()
            .map(|(w, a)| (w.trim().to_owned(), a))
            .filter(|(w, _)| !w.is_empty())
            .unzip();
        let automaton = (!patterns.is_empty())
            .then(|| {
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(&patterns)
                    .ok()
            })
            .flatten();
        Self { automaton, actions }
    }

    pub fn len(&self) -> usize {
        self.actions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    pub fn check(&self, text: &str) -> Filtered {
        let Some(automaton) = &self.automaton else {
            return Filtered::Clean;
        };
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        let mut hit = false;
        for m in automaton.find_iter(text) {
            if self.actions[m.pattern().as_usize()] == WordAction::Block {
                return Filtered::Blocked;
            }
            hit = true;
            out.push_str(&text[last..m.start()]);
            out.extend(std::iter::repeat_n(
                '＊',
                text[m.start()..m.end()].chars().count(),
            ));
            last = m.end();
        }
        if !hit {
            return Filtered::Clean;
        }
        out.push_str(&text[last..]);
        Filtered::Masked(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> WordFilter {
        WordFilter::new([
            ("加微信".to_owned(), WordAction::Block),
            ("傻瓜".to_owned(), WordAction::Mask),
            ("fake".to_owned(), WordAction::Mask),
            ("假货".to_owned(), WordAction::Mask),
        ])
    }

    #[test]
    fn masks_and_blocks() {
        let f = filter();
        assert_eq!(f.check("主播好"), Filtered::Clean);
        assert_eq!(f.check("你这个傻瓜"), Filtered::Masked("你这个＊＊".into()));
        assert_eq!(
            f.check("FAKE 假货!"),
            Filtered::Masked("＊＊＊＊ ＊＊!".into())
        );
        assert_eq!(f.check("便宜，加微信买"), Filtered::Blocked);
    }

    #[test]
    fn empty_list_passes_everything() {
        assert_eq!(WordFilter::default().check("任何内容"), Filtered::Clean);
    }
}
