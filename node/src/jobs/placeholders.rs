//! The template text rule: `{{name}}` placeholders, checked when a template is saved
//! and filled per recipient when a job is made.
//!
//! A placeholder is `{{`, optional spaces, a name, optional spaces, `}}`. A name is 1 to
//! 64 of `a-z A-Z 0-9 _ . -`, starting with a letter or `_`. Every `{{` must open a
//! placeholder: a text with a stray `{{` or a malformed name is refused when it is
//! saved, so that a template never reaches a phone half-filled. A single `{` or `}` is
//! plain text.

use std::collections::BTreeSet;

/// Longest variable name.
const MAX_NAME: usize = 64;

/// A checked template text: its pieces, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateText {
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Variable(String),
}

/// Why a template text was refused: where (a character offset) and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the placeholder at character {at} {problem}")]
pub struct PlaceholderError {
    pub at: usize,
    pub problem: &'static str,
}

/// The variables a recipient lacks, by name (sorted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("missing template variables: {}", .0.join(", "))]
pub struct MissingVariables(pub Vec<String>);

impl TemplateText {
    /// Checks `text` and splits it into literals and placeholders.
    pub fn parse(text: &str) -> Result<TemplateText, PlaceholderError> {
        let mut pieces = Vec::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                pieces.push(Piece::Literal(rest[..open].to_owned()));
            }
            let at = offset + rest[..open].chars().count();
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                return Err(PlaceholderError {
                    at,
                    problem: "is not closed with }}",
                });
            };
            let name = after[..close].trim_matches(' ');
            if !valid_name(name) {
                return Err(PlaceholderError {
                    at,
                    problem: "needs a name of 1 to 64 letters, digits, `_`, `.` or `-`, \
                              starting with a letter or `_`",
                });
            }
            pieces.push(Piece::Variable(name.to_owned()));
            offset = at + 2 + after[..close].chars().count() + 2;
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Literal(rest.to_owned()));
        }
        Ok(TemplateText { pieces })
    }

    /// The names of its placeholders, each once, sorted.
    pub fn variables(&self) -> BTreeSet<&str> {
        self.pieces
            .iter()
            .filter_map(|piece| match piece {
                Piece::Variable(name) => Some(name.as_str()),
                Piece::Literal(_) => None,
            })
            .collect()
    }

    /// The text with every placeholder replaced by `value(name)`; the names `value`
    /// has nothing for are [`MissingVariables`] (and nothing is rendered).
    pub fn render<'v>(
        &self,
        value: impl Fn(&str) -> Option<&'v str>,
    ) -> Result<String, MissingVariables> {
        let mut out = String::new();
        let mut missing = BTreeSet::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Variable(name) => match value(name) {
                    Some(v) => out.push_str(v),
                    None => {
                        missing.insert(name.clone());
                    }
                },
            }
        }
        if missing.is_empty() {
            Ok(out)
        } else {
            Err(MissingVariables(missing.into_iter().collect()))
        }
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok
        && name.len() <= MAX_NAME
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        let map: HashMap<&str, &str> = pairs.iter().copied().collect();
        move |name| map.get(name).copied()
    }

    #[test]
    fn placeholders_are_filled_from_the_variables() {
        let text =
            TemplateText::parse("Hi {{name}}, your order {{ order.id }} ships {{when}}. {x} }} {")
                .unwrap();
        assert_eq!(
            text.variables().into_iter().collect::<Vec<_>>(),
            ["name", "order.id", "when"]
        );
        let out = text
            .render(vars(&[
                ("name", "Sari"),
                ("order.id", "A-17"),
                ("when", "today"),
            ]))
            .unwrap();
        assert_eq!(out, "Hi Sari, your order A-17 ships today. {x} }} {");
        let plain = TemplateText::parse("no placeholders").unwrap();
        assert_eq!(plain.render(vars(&[])).unwrap(), "no placeholders");
    }

    #[test]
    fn every_missing_variable_is_named_and_nothing_is_rendered() {
        let text = TemplateText::parse("{{a}} {{b}} {{a}} {{c}}").unwrap();
        assert_eq!(
            text.render(vars(&[("b", "2")])),
            Err(MissingVariables(vec!["a".into(), "c".into()]))
        );
        assert_eq!(
            MissingVariables(vec!["a".into(), "c".into()]).to_string(),
            "missing template variables: a, c"
        );
    }

    #[test]
    fn a_stray_or_malformed_placeholder_is_refused_with_its_place() {
        for (text, at) in [
            ("Hello {{name", 6),
            ("Hello {{}}", 6),
            ("é {{1abc}}", 2),
            ("{{a b}}", 0),
            ("ok {{a}} then {{ }}", 14),
        ] {
            let error = TemplateText::parse(text).unwrap_err();
            assert_eq!(error.at, at, "{text}: {error}");
        }
        let long = format!("{{{{{}}}}}", "a".repeat(65));
        assert!(TemplateText::parse(&long).is_err());
        let longest = format!("{{{{{}}}}}", "a".repeat(64));
        assert!(TemplateText::parse(&longest).is_ok());
    }
}
