//! Tor: TLS with Tor's characteristic ClientHello shape.
//!
//! Tor relays speak TLS with a random SNI, `www.` + base32 noise + `.com` (tor's
//! `crypto_random_hostname`), and no ALPN. Since that is TLS on the wire, the TLS dissector owns
//! these flows (protocol "TLS") and calls [`looks_like_tor`] on the ClientHello to set
//! `app_hint = "Tor"`, which is how nDPI's `TLS.Tor` maps onto vigil's facts. The [`Tor`]
//! dissector itself therefore never claims a flow; it stays as a candidate slot in case a non-TLS
//! Tor transport (obfs4, ...) gets a recognizer.
//!
//! Precision over recall: the rule only fires when the name is unlike a human-chosen one (see
//! [`random_label`]) and the client offers no ALPN (every browser and HTTP library does). nDPI's
//! own expected output labels only some of `tor.pcap`'s relay flows `TLS.Tor` (it also leans on
//! a relay address list); this rule flags all of them and no named site in the corpus.

use super::tls::ClientHello;
use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::PacketView;

#[derive(Debug, Default)]
pub struct Tor;

impl Dissector for Tor {
    fn name(&self) -> &'static str {
        "tor"
    }
    fn on_packet(&mut self, _pkt: &PacketView<'_>, _facts: &mut Facts) -> Step {
        Step::NotMine
    }
}

/// A ClientHello as Tor sends it: SNI `www.<random>.com|net` and no ALPN.
pub fn looks_like_tor(ch: &ClientHello<'_>) -> bool {
    ch.alpn_protocols().next().is_none() && ch.server_name.is_some_and(is_tor_sni)
}

/// `www.<random base32 label>.com` or `.net`.
pub fn is_tor_sni(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("www.") else { return false };
    let Some(label) = rest.strip_suffix(".com").or_else(|| rest.strip_suffix(".net")) else { return false };
    random_label(label)
}

/// Base32 noise (`a-z2-7`, 4 to 32 characters) that does not read like a name: two or more digits,
/// or a digit plus a run of three consonants. Real names in that alphabet ("4shared", "web2py")
/// carry at most one digit among pronounceable letters.
fn random_label(label: &str) -> bool {
    let b = label.as_bytes();
    if !(4..=32).contains(&b.len()) || !b.iter().all(|c| c.is_ascii_lowercase() || (b'2'..=b'7').contains(c)) {
        return false;
    }
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    let mut run = 0;
    let mut longest = 0;
    for c in b {
        if c.is_ascii_lowercase() && !b"aeiou".contains(c) {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    digits >= 2 || digits == 1 && longest >= 3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tor_snis_from_the_corpus() {
        // Hostname/SNI of the relay flows in /work/shared/corpus/ndpi/tor.pcap.out.
        for n in [
            "www.ct7ctrgb6cr7.com",
            "www.q4cyamnc6mtokjurvdclt.com",
            "www.gfu7hbxpfp.com",
            "www.e6r5p57kbafwrxj3plz.com",
            "www.t3i3ru.com",
            "www.6gyip7tqim7sieb.com",
            "www.jmts2id.com",
        ] {
            assert!(is_tor_sni(n), "{n}");
        }
    }

    #[test]
    fn ordinary_sites_are_not_tor() {
        for n in [
            "www.google.com",
            "www.iit.cnr.it",
            "www.4shared.com",
            "www.web2py.com",
            "www.strengths.com",
            "www.example.net",
            "www.b2b.com",
            "mail.ct7ctrgb6cr7.com",
            "www.ct7ctrgb6cr7.org",
            "www.ct7ctrgb6cr8.com",
        ] {
            assert!(!is_tor_sni(n), "{n}");
        }
    }
}
