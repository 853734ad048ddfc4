//! Who may connect and what they may touch: tokens, signed media URLs, the VAPID key,
//! passwords, room membership, topic ACL.

pub mod acl;
pub mod membership;
pub mod passwords;
pub mod rate;
pub mod rules;
pub mod tokens;
pub mod urls;
pub mod vapid;

pub use acl::{Decision, Policy};
pub use membership::MembershipView;
pub use rules::{OperatorRules, Rule, ANONYMOUS};
pub use tokens::{TokenError, TokenService};
pub use urls::UrlSigner;
pub use vapid::VapidKey;
