//! The words search matches: one tokenizer for what is stored and what is asked, on every store.

use std::borrow::Cow;
use std::collections::HashSet;
use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

/// Longest word kept, in bytes: anything longer is no word anyone searches for.
const MAX_WORD: usize = 64;

/// The distinct words of `text`, in order of appearance: runs of letters and digits, lowercased.
/// Punctuation, spaces and symbols (emoji) separate words; diacritics stay (`café` is not `cafe`,
/// however its accent was typed: the text is composed first, NFC).
pub fn words(text: &str) -> Vec<String> {
    let text: Cow<'_, str> = match is_nfc_quick(text.chars()) {
        IsNormalized::Yes => Cow::Borrowed(text),
        _ => Cow::Owned(text.nfc().collect()),
    };
    let mut seen = HashSet::new();
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty() && word.len() <= MAX_WORD)
        .map(str::to_lowercase)
        .filter(|word| seen.insert(word.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::words;

    #[test]
    fn words_are_letters_and_digits_lowercased_once() {
        assert_eq!(words("Lunch at 12:30? LUNCH!"), ["lunch", "at", "12", "30"]);
        assert_eq!(words("café Straße 東京 🎉 don't"), ["café", "straße", "東京", "don", "t"]);
        assert!(words(" -- 🎉 ").is_empty());
        assert!(words(&"x".repeat(65)).is_empty(), "too long to be a word");
        assert_eq!(words("cafe\u{301} café"), ["café"], "one word, however its accent was typed");
    }
}
