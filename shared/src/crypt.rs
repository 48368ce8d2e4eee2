//! age encryption (age-encryption.org/v1, through the `age` crate): who an
//! archive is encrypted to, and what can open it.
//!
//! Recipients are public: age X25519 keys (`age1...`) and SSH public keys
//! (`ssh-ed25519 ...`, `ssh-rsa ...`), from `--recipient`, `--recipients-file`
//! or the config (`encryption.recipients`, `encryption.recipients_file`); or a
//! passphrase (scrypt), read from the file named by `ORCA_PASSPHRASE_FILE`,
//! else asked on the terminal, never from the command line or the record.
//! Identities are secret: age identity files (`AGE-SECRET-KEY-1...` lines, as
//! `age-keygen` and `orca-keygen` write them) and unencrypted SSH private
//! keys, from `--identity`, `ORCA_IDENTITY` or `encryption.identity_file`.

use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::SecretString;

use crate::config;
use crate::exit::ErrorKind;

/// The first bytes of a binary age file.
pub const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";
/// The first line of an armored (`age -a`) file.
pub const ARMOR_BEGIN: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";
/// The file name suffix of encrypted archives (`orca-db-x.tar.gz.age`).
pub const SUFFIX: &str = ".age";
/// The environment variable naming a file that holds the passphrase.
pub const PASSPHRASE_FILE_ENV: &str = "ORCA_PASSPHRASE_FILE";
/// The environment variable naming an identity file (or holding a key).
pub const IDENTITY_ENV: &str = "ORCA_IDENTITY";

/// Whether `head` (the first bytes of a file) is an age file, and armored.
pub fn detect(head: &[u8]) -> Option<bool> {
    if head.starts_with(AGE_MAGIC) {
        return Some(false);
    }
    let trimmed = head
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map_or(&[][..], |i| &head[i..]);
    trimmed.starts_with(ARMOR_BEGIN).then_some(true)
}

type BoxedRecipient = Box<dyn age::Recipient + Send + Sync>;
type BoxedIdentity = Box<dyn age::Identity + Send + Sync>;

/// Who an export is encrypted to.
pub struct Recipients {
    list: Vec<BoxedRecipient>,
    public: Vec<String>,
    passphrase: Option<SecretString>,
}

impl std::fmt::Debug for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recipients")
            .field("public", &self.public)
            .field("passphrase", &self.passphrase.is_some())
            .finish()
    }
}

impl Recipients {
    /// The public keys (for the manifest); empty for a passphrase.
    pub fn public(&self) -> &[String] {
        &self.public
    }

    /// Encrypted with a passphrase rather than to keys.
    pub fn is_passphrase(&self) -> bool {
        self.passphrase.is_some()
    }

    /// Encrypted to a passphrase.
    pub fn passphrase(passphrase: SecretString) -> Recipients {
        Recipients {
            list: Vec::new(),
            public: Vec::new(),
            passphrase: Some(passphrase),
        }
    }

    /// Start an age stream into `w`: the header is written at once, so the
    /// first bytes `w` sees are already the age header.
    pub fn wrap<W: Write>(&self, w: W) -> io::Result<age::stream::StreamWriter<W>> {
        let encryptor = match &self.passphrase {
            Some(p) => age::Encryptor::with_user_passphrase(p.clone()),
            None => age::Encryptor::with_recipients(
                self.list.iter().map(|r| r.as_ref() as &dyn age::Recipient),
            )
            .map_err(|e| io::Error::other(format!("age: {e}")))?,
        };
        encryptor.wrap_output(w)
    }
}

/// Parse one recipient: `age1...`, `ssh-ed25519 AAAA...`, `ssh-rsa AAAA...`.
pub fn parse_recipient(text: &str) -> anyhow::Result<(BoxedRecipient, String)> {
    let t = text.trim();
    if t.starts_with("age1") {
        return match age::x25519::Recipient::from_str(t) {
            Ok(r) => {
                let shown = r.to_string();
                Ok((Box::new(r), shown))
            }
            Err(e) => crate::fail!(
                Usage,
                "recipient {t:?} is not a valid age public key ({e}); age keys look like age1... (orca-keygen prints one)"
            ),
        };
    }
    if t.starts_with("ssh-") {
        return match age::ssh::Recipient::from_str(t) {
            Ok(r) => {
                let shown = r.to_string();
                Ok((Box::new(r), shown))
            }
            Err(_) => crate::fail!(
                Usage,
                "recipient {:?} is not a supported SSH public key: use an ssh-ed25519 or ssh-rsa key (the line of its .pub file)",
                short(t)
            ),
        };
    }
    if looks_like_key(t) {
        crate::fail!(
            Usage,
            "that is a secret key, not a recipient: give the public key (age1..., printed by orca-keygen and `age-keygen -y`), and keep the secret key private"
        );
    }
    crate::fail!(
        Usage,
        "recipient {:?} is not an age public key (age1...) or an SSH public key (ssh-ed25519 ..., ssh-rsa ...)",
        short(t)
    )
}

fn short(t: &str) -> String {
    let cut: String = t.chars().take(40).collect();
    if cut.len() < t.len() {
        format!("{cut}...")
    } else {
        cut
    }
}

/// The recipients in a file: one per line, `#` comments and blank lines
/// skipped (as `age -R` reads it).
pub fn recipients_file(path: &Path) -> anyhow::Result<Vec<(BoxedRecipient, String)>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| crate::err!(Usage, "cannot read recipients file {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let r = parse_recipient(line).map_err(|e| {
            crate::err!(
                Usage,
                "recipients file {}: line {}: {}",
                path.display(),
                i + 1,
                crate::exit::message_of(&e, ErrorKind::Usage)
            )
        })?;
        out.push(r);
    }
    if out.is_empty() {
        crate::fail!(
            Usage,
            "recipients file {} lists no recipients",
            path.display()
        );
    }
    Ok(out)
}

/// What the command line says about encrypting.
#[derive(Clone, Debug, Default)]
pub struct EncryptFlags {
    /// `--encrypt`: to the configured recipients.
    pub encrypt: bool,
    /// `--no-encrypt`: not even when `encryption.always` says so.
    pub no_encrypt: bool,
    /// `--recipient` values.
    pub recipients: Vec<String>,
    /// `--recipients-file`.
    pub recipients_file: Option<PathBuf>,
    /// `--passphrase`.
    pub passphrase: bool,
}

impl EncryptFlags {
    /// Whether any flag asks for encryption.
    pub fn asked(&self) -> bool {
        self.encrypt
            || self.passphrase
            || !self.recipients.is_empty()
            || self.recipients_file.is_some()
    }
}

/// Whether these flags and config encrypt (without reading recipients or
/// asking for a passphrase yet).
pub fn wants_encryption(flags: &EncryptFlags, cfg: &config::Encryption) -> bool {
    !flags.no_encrypt && (flags.asked() || cfg.always)
}

/// Who to encrypt to, or `None` for a plain archive.
pub fn recipients_for(
    flags: &EncryptFlags,
    cfg: &config::Encryption,
) -> anyhow::Result<Option<Recipients>> {
    if flags.no_encrypt {
        if flags.asked() {
            crate::fail!(
                Usage,
                "--no-encrypt cannot be combined with --encrypt, --recipient, --recipients-file or --passphrase"
            );
        }
        return Ok(None);
    }
    let by_flags = !flags.recipients.is_empty() || flags.recipients_file.is_some();
    if flags.passphrase {
        if by_flags {
            crate::fail!(
                Usage,
                "an archive is encrypted either with a passphrase or to recipients, not both (age does not mix them): drop --passphrase or the recipients"
            );
        }
        return Ok(Some(Recipients::passphrase(passphrase_for_encrypting()?)));
    }
    let mut found: Vec<(BoxedRecipient, String)> = Vec::new();
    if by_flags {
        for r in &flags.recipients {
            found.push(parse_recipient(r)?);
        }
        if let Some(f) = &flags.recipients_file {
            found.extend(recipients_file(f)?);
        }
    }
    // --encrypt means the configured recipients, with any given here too.
    if flags.encrypt || (!by_flags && cfg.always) {
        for r in &cfg.recipients {
            found.push(parse_recipient(r).map_err(|e| {
                crate::err!(
                    Usage,
                    "config encryption.recipients: {}",
                    crate::exit::message_of(&e, ErrorKind::Usage)
                )
            })?);
        }
        if let Some(f) = cfg
            .recipients_file
            .as_deref()
            .filter(|f| !f.trim().is_empty())
        {
            found.extend(recipients_file(&crate::paths::resolve_user_path(f)?)?);
        }
        if found.is_empty() {
            crate::fail!(
                Usage,
                "nothing to encrypt to: pass --recipient KEY (orca-keygen makes a key and prints it), or set encryption.recipients in config"
            );
        }
    } else if !by_flags {
        return Ok(None);
    }
    let mut public = Vec::new();
    let mut list = Vec::new();
    for (r, shown) in found {
        if !public.contains(&shown) {
            public.push(shown);
            list.push(r);
        }
    }
    Ok(Some(Recipients {
        list,
        public,
        passphrase: None,
    }))
}

/// The passphrase to encrypt with: `ORCA_PASSPHRASE_FILE`, else asked twice
/// on the terminal.
fn passphrase_for_encrypting() -> anyhow::Result<SecretString> {
    if let Some(p) = passphrase_from_file()? {
        return Ok(p);
    }
    let first = prompt("Passphrase for the archive: ")?;
    if first.is_empty() {
        crate::fail!(Usage, "an empty passphrase encrypts nothing; try again");
    }
    let second = prompt("Same passphrase again: ")?;
    if first != second {
        crate::fail!(
            Usage,
            "the two passphrases differ; nothing was written, try again"
        );
    }
    Ok(SecretString::from(first))
}

fn passphrase_from_file() -> anyhow::Result<Option<SecretString>> {
    let Some(path) = std::env::var_os(PASSPHRASE_FILE_ENV) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        crate::err!(
            Usage,
            "cannot read the passphrase file {} ({PASSPHRASE_FILE_ENV}): {e}",
            Path::new(&path).display()
        )
    })?;
    // One line; the newline that editors and `echo` add is not part of it.
    let pass = text.strip_suffix('\n').unwrap_or(&text);
    let pass = pass.strip_suffix('\r').unwrap_or(pass);
    if pass.contains('\n') || pass.contains('\r') {
        crate::fail!(
            Usage,
            "the passphrase file {} ({PASSPHRASE_FILE_ENV}) holds more than one line: it must hold the passphrase alone, on one line",
            Path::new(&path).display()
        );
    }
    if pass.is_empty() {
        crate::fail!(
            Usage,
            "the passphrase file {} ({PASSPHRASE_FILE_ENV}) is empty",
            Path::new(&path).display()
        );
    }
    Ok(Some(SecretString::from(pass.to_string())))
}

fn prompt(text: &str) -> anyhow::Result<String> {
    rpassword::prompt_password(text).map_err(|e| {
        if crate::interrupt::interrupted() || e.kind() == io::ErrorKind::Interrupted {
            return crate::err!(Interrupted, "interrupted at the passphrase prompt; nothing was done");
        }
        crate::err!(
            Usage,
            "cannot ask for the passphrase ({e}): no terminal; put it in a file readable only by you and set {PASSPHRASE_FILE_ENV} to its path"
        )
    })
}

/// What can open encrypted archives.
pub struct Identities {
    /// Keys (age identity files, SSH keys).
    keys: Vec<BoxedIdentity>,
    /// Where they came from, for messages (paths or variable names, never keys).
    pub sources: Vec<String>,
    passphrase: Option<SecretString>,
    /// The passphrase was asked for (`--passphrase`), not only found in
    /// `ORCA_PASSPHRASE_FILE`.
    passphrase_asked: bool,
    /// Why an identity named by the environment or the config could not be
    /// loaded: an error only once an encrypted archive needs it (plain
    /// archives do not care that the key is kept elsewhere).
    deferred: Option<String>,
    /// Recipients of the X25519 identities (to check that a copy this run
    /// encrypts can be opened again).
    x25519_public: Vec<String>,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identities")
            .field("sources", &self.sources)
            .field("passphrase", &self.passphrase.is_some())
            .field("deferred", &self.deferred)
            .finish()
    }
}

/// How an age file is opened with what was given.
pub enum Opener<'a> {
    /// With these identities.
    With(Vec<&'a dyn age::Identity>),
    /// Nothing given fits this kind of file: why (the content cannot be
    /// checked, which is not an error for a verification).
    Nothing(String),
    /// An identity named by the environment or config could not be loaded.
    Broken(String),
}

impl Identities {
    /// None at all.
    pub fn none() -> Identities {
        Identities {
            keys: Vec::new(),
            sources: Vec::new(),
            passphrase: None,
            passphrase_asked: false,
            deferred: None,
            x25519_public: Vec::new(),
        }
    }

    /// Whether there is anything to decrypt with.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.passphrase.is_none()
    }

    /// Whether a passphrase is among them.
    pub fn has_passphrase(&self) -> bool {
        self.passphrase.is_some()
    }

    /// The passphrase, to encrypt a copy this run makes so that it can open
    /// it again.
    pub fn passphrase(&self) -> Option<&SecretString> {
        self.passphrase.as_ref()
    }

    /// What to open a file with, whose header says whether it is
    /// passphrase-encrypted (`scrypt`): a passphrase file is opened with the
    /// passphrase alone, a file encrypted to keys with the keys (and with an
    /// asked-for passphrase, to say clearly that it does not fit).
    pub fn opener(&self, scrypt: bool) -> Opener<'_> {
        if scrypt {
            return match &self.passphrase {
                Some(_) => Opener::With(Vec::new()),
                None => match &self.deferred {
                    Some(why) => Opener::Broken(why.clone()),
                    None => Opener::Nothing(format!(
                        "it is encrypted with a passphrase: pass --passphrase (or set {PASSPHRASE_FILE_ENV})"
                    )),
                },
            };
        }
        if self.keys.is_empty() && !(self.passphrase.is_some() && self.passphrase_asked) {
            return match &self.deferred {
                Some(why) => Opener::Broken(why.clone()),
                None => Opener::Nothing(format!(
                    "it is encrypted (age) and no identity was given: pass --identity FILE, set encryption.identity_file in config or {IDENTITY_ENV}"
                )),
            };
        }
        Opener::With(
            self.keys
                .iter()
                .map(|i| i.as_ref() as &dyn age::Identity)
                .collect(),
        )
    }

    /// Open `d` with what fits it (see [`Identities::opener`]).
    pub fn decrypt<R: io::Read>(
        &self,
        d: age::Decryptor<R>,
    ) -> Result<age::stream::StreamReader<R>, OpenError> {
        let scrypt = d.is_scrypt();
        match self.opener(scrypt) {
            Opener::Nothing(why) => Err(OpenError::Nothing(why)),
            Opener::Broken(why) => Err(OpenError::Broken(why)),
            Opener::With(_) if scrypt => {
                let p = self.passphrase.clone().expect("a passphrase, by opener");
                let id = age::scrypt::Identity::new(p);
                d.decrypt(std::iter::once(&id as &dyn age::Identity))
                    .map_err(OpenError::Age)
            }
            Opener::With(mut keys) => {
                let id = self
                    .passphrase
                    .clone()
                    .filter(|_| self.passphrase_asked)
                    .map(age::scrypt::Identity::new);
                if let Some(id) = &id {
                    keys.push(id as &dyn age::Identity);
                }
                d.decrypt(keys.into_iter()).map_err(OpenError::Age)
            }
        }
    }

    /// Whether these open the age file at `path` (its header, checked now).
    pub fn open_file(&self, path: &Path) -> Result<(), OpenError> {
        let f = std::fs::File::open(path).map_err(|e| OpenError::Age(e.into()))?;
        let d = age::Decryptor::new(io::BufReader::new(f)).map_err(OpenError::Age)?;
        self.decrypt(d).map(|_| ())
    }

    /// Whether one of these opens what is encrypted to `public` (an X25519
    /// recipient; SSH keys cannot be told this way).
    pub fn opens(&self, public: &str) -> bool {
        self.x25519_public.iter().any(|p| p == public)
    }

    /// Add a passphrase (encrypting and decrypting a copy with the same one).
    pub fn add_passphrase(&mut self, p: SecretString) {
        self.passphrase = Some(p);
    }
}

/// Why an age file did not open.
#[derive(Debug)]
pub enum OpenError {
    /// Nothing given fits it (see [`Opener::Nothing`]).
    Nothing(String),
    /// An identity named by the environment or config could not be loaded.
    Broken(String),
    /// age's own refusal.
    Age(age::DecryptError),
}

impl OpenError {
    /// As (kind, message) for users; see [`explain`].
    pub fn explain(&self, ids: &Identities, recipients: &[String]) -> (ErrorKind, String) {
        match self {
            OpenError::Nothing(why) => (ErrorKind::DecryptionFailed, why.clone()),
            OpenError::Broken(why) => (ErrorKind::Usage, why.clone()),
            OpenError::Age(e) => explain(e, ids, recipients),
        }
    }
}

/// What the command line says about decrypting.
#[derive(Clone, Debug, Default)]
pub struct DecryptFlags {
    /// `--identity` values.
    pub identities: Vec<PathBuf>,
    /// `--passphrase`.
    pub passphrase: bool,
}

/// Whether `text` is a secret key rather than a path: an age identity or a
/// private key in PEM/OpenSSH form (as a CI secret holds it).
fn looks_like_key(text: &str) -> bool {
    let t = text.to_ascii_uppercase();
    t.contains("AGE-SECRET-KEY-") || t.contains("PRIVATE KEY-----")
}

/// The identities to decrypt with: `--identity` files, else `ORCA_IDENTITY`,
/// else `encryption.identity_file`; plus the passphrase with `--passphrase`
/// or when `ORCA_PASSPHRASE_FILE` is set. A file named on the command line
/// must load; one named by the environment or the config that does not is
/// reported only when an encrypted archive needs it.
pub fn identities_for(
    flags: &DecryptFlags,
    cfg: &config::Encryption,
) -> anyhow::Result<Identities> {
    let mut ids = Identities::none();
    if !flags.identities.is_empty() {
        for p in &flags.identities {
            load_identity_file(p, &mut ids)?;
        }
    } else if let Some(v) = std::env::var_os(IDENTITY_ENV).filter(|v| !v.is_empty()) {
        let text = v.to_string_lossy();
        let loaded = if looks_like_key(&text) {
            load_identities_text(text.as_bytes(), IDENTITY_ENV, &mut ids)
        } else {
            load_identity_file(Path::new(&v), &mut ids)
        };
        if let Err(e) = loaded {
            ids.deferred = Some(format!(
                "{IDENTITY_ENV}: {}; fix it or unset it",
                crate::exit::message_of(&e, ErrorKind::Usage)
            ));
        }
    } else if let Some(f) = cfg
        .identity_file
        .as_deref()
        .filter(|f| !f.trim().is_empty())
    {
        let loaded =
            crate::paths::resolve_user_path(f).and_then(|p| load_identity_file(&p, &mut ids));
        if let Err(e) = loaded {
            ids.deferred = Some(format!(
                "config encryption.identity_file: {}; fix the path (or pass --identity)",
                crate::exit::message_of(&e, ErrorKind::Usage)
            ));
        }
    }
    match (flags.passphrase, passphrase_from_file()) {
        (true, Ok(Some(p))) => {
            ids.add_passphrase(p);
            ids.passphrase_asked = true;
        }
        (true, Ok(None)) => {
            ids.add_passphrase(SecretString::from(prompt("Passphrase: ")?));
            ids.passphrase_asked = true;
        }
        (true, Err(e)) => return Err(e),
        (false, Ok(Some(p))) => ids.add_passphrase(p),
        (false, Ok(None)) => {}
        (false, Err(e)) => {
            if ids.deferred.is_none() {
                ids.deferred = Some(crate::exit::message_of(&e, ErrorKind::Usage));
            }
        }
    }
    Ok(ids)
}

fn load_identity_file(path: &Path, ids: &mut Identities) -> anyhow::Result<()> {
    let bytes = std::fs::read(path)
        .map_err(|e| crate::err!(Usage, "cannot read identity file {}: {e}", path.display()))?;
    load_identities_text(&bytes, &path.display().to_string(), ids)
}

fn load_identities_text(bytes: &[u8], source: &str, ids: &mut Identities) -> anyhow::Result<()> {
    let text = String::from_utf8_lossy(bytes);
    if text.contains("-----BEGIN OPENSSH PRIVATE KEY-----")
        || text.contains("-----BEGIN RSA PRIVATE KEY-----")
    {
        let id = age::ssh::Identity::from_buffer(io::BufReader::new(bytes), Some(source.into()))
            .map_err(|e| {
                crate::err!(Usage, "identity file {source}: not a usable SSH key ({e})")
            })?;
        match id {
            age::ssh::Identity::Unencrypted(_) => {}
            age::ssh::Identity::Encrypted(_) => crate::fail!(
                Usage,
                "identity file {source} is an SSH key protected by a passphrase, which orca cannot ask for: use an age identity (orca-keygen), or a copy of the key without a passphrase kept as private as the key"
            ),
            age::ssh::Identity::Unsupported(_) => crate::fail!(
                Usage,
                "identity file {source} is an SSH key of a kind age does not support: use ssh-ed25519 or ssh-rsa, or an age identity (orca-keygen)"
            ),
        }
        ids.keys.push(Box::new(id));
        ids.sources.push(source.to_string());
        return Ok(());
    }
    let file = age::IdentityFile::from_buffer(io::BufReader::new(bytes)).map_err(|e| {
        crate::err!(
            Usage,
            "identity file {source}: not an age identity file or SSH private key ({e})"
        )
    })?;
    let mut count = 0;
    for line in bytes.lines().map_while(Result::ok) {
        let line = line.trim();
        if line.starts_with("AGE-SECRET-KEY-")
            && let Ok(k) = age::x25519::Identity::from_str(line)
        {
            ids.x25519_public.push(k.to_public().to_string());
        }
    }
    for id in file
        .into_identities()
        .map_err(|e| crate::err!(Usage, "identity file {source}: {e}"))?
    {
        ids.keys.push(id);
        count += 1;
    }
    if count == 0 {
        crate::fail!(Usage, "identity file {source} holds no identity");
    }
    ids.sources.push(source.to_string());
    Ok(())
}

/// A new X25519 identity: the text of an identity file (with the public key
/// in a comment, as age-keygen writes it) and the recipient.
pub fn generate() -> (SecretString, String) {
    use age::secrecy::ExposeSecret;
    let key = age::x25519::Identity::generate();
    let public = key.to_public().to_string();
    let text = format!(
        "# created: {}\n# public key: {public}\n{}\n",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        key.to_string().expose_secret()
    );
    (SecretString::from(text), public)
}

/// Why an age file could not be opened, as (kind, message).
pub fn explain(
    e: &age::DecryptError,
    ids: &Identities,
    recipients: &[String],
) -> (ErrorKind, String) {
    use age::DecryptError as D;
    let to = if recipients.is_empty() {
        String::new()
    } else {
        format!(
            " (its manifest says it is encrypted to {})",
            recipients.join(", ")
        )
    };
    match e {
        D::NoMatchingKeys if ids.is_empty() => (
            ErrorKind::DecryptionFailed,
            format!(
                "it is encrypted (age) and no identity was given{to}: pass --identity FILE, set encryption.identity_file in config or {IDENTITY_ENV}; for a passphrase, --passphrase or {PASSPHRASE_FILE_ENV}"
            ),
        ),
        D::NoMatchingKeys => (
            ErrorKind::DecryptionFailed,
            format!(
                "none of the identities given ({}) opens it{to}",
                describe_sources(ids)
            ),
        ),
        D::DecryptionFailed | D::KeyDecryptionFailed if ids.has_passphrase() => (
            ErrorKind::DecryptionFailed,
            "the passphrase does not open it (wrong passphrase, or a damaged header)".into(),
        ),
        D::ExcessiveWork { .. } => (
            ErrorKind::DecryptionFailed,
            format!("its passphrase encryption asks for more work than orca allows ({e})"),
        ),
        D::InvalidHeader | D::UnknownFormat | D::InvalidMac | D::DecryptionFailed => (
            ErrorKind::VerificationFailed,
            format!("its age header is damaged ({e})"),
        ),
        other => (
            ErrorKind::VerificationFailed,
            format!("it cannot be decrypted ({other})"),
        ),
    }
}

fn describe_sources(ids: &Identities) -> String {
    let mut s = ids.sources.clone();
    if ids.has_passphrase() {
        s.push("a passphrase".into());
    }
    s.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_checked() {
        let (_, public) = generate();
        assert_eq!(parse_recipient(&public).unwrap().1, public);
        assert!(parse_recipient("age1nope").is_err());
        let e = parse_recipient("AGE-SECRET-KEY-1ABC")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("secret key"), "{e}");
        let e = parse_recipient("hello").err().unwrap().to_string();
        assert!(e.contains("not an age public key"), "{e}");
    }

    #[test]
    fn detects_binary_and_armored_age() {
        assert_eq!(detect(b"age-encryption.org/v1\n-> X25519"), Some(false));
        assert_eq!(
            detect(b"\n-----BEGIN AGE ENCRYPTED FILE-----\nYWdl"),
            Some(true)
        );
        assert_eq!(detect(b"\x1f\x8b\x08"), None);
    }

    #[test]
    fn generated_identities_open_what_is_encrypted_to_them() {
        use age::secrecy::ExposeSecret;
        let (secret, public) = generate();
        let mut ids = Identities::none();
        load_identities_text(secret.expose_secret().as_bytes(), "test", &mut ids).unwrap();
        assert!(ids.opens(&public));
        let (r, _) = parse_recipient(&public).unwrap();
        let recipients = Recipients {
            list: vec![r],
            public: vec![public],
            passphrase: None,
        };
        let mut out = Vec::new();
        let mut w = recipients.wrap(&mut out).unwrap();
        w.write_all(b"hello").unwrap();
        w.finish().unwrap();
        assert!(out.starts_with(AGE_MAGIC));
        let d = age::Decryptor::new(&out[..]).unwrap();
        let mut r = ids.decrypt(d).unwrap();
        let mut got = Vec::new();
        io::Read::read_to_end(&mut r, &mut got).unwrap();
        assert_eq!(got, b"hello");
        // Nothing given: not an error of the archive, nothing to open it with.
        let none = Identities::none();
        let d = age::Decryptor::new(&out[..]).unwrap();
        let Err(e) = none.decrypt(d) else {
            panic!("opened without a key")
        };
        assert!(matches!(e, OpenError::Nothing(_)));
        assert_eq!(e.explain(&none, &[]).0, ErrorKind::DecryptionFailed);
        // Another key: age's refusal, exit 14.
        let (other_secret, _) = generate();
        let mut other = Identities::none();
        load_identities_text(other_secret.expose_secret().as_bytes(), "t", &mut other).unwrap();
        let d = age::Decryptor::new(&out[..]).unwrap();
        let Err(e) = other.decrypt(d) else {
            panic!("opened with another key")
        };
        assert!(matches!(e, OpenError::Age(_)));
        assert_eq!(e.explain(&other, &[]).0, ErrorKind::DecryptionFailed);
        // A passphrase from the environment alone does not try a key-encrypted file.
        let mut env_only = Identities::none();
        env_only.add_passphrase(SecretString::from("pw".to_string()));
        let d = age::Decryptor::new(&out[..]).unwrap();
        assert!(matches!(env_only.decrypt(d), Err(OpenError::Nothing(_))));
    }

    #[test]
    fn keys_are_never_taken_for_paths() {
        assert!(looks_like_key("# created: x\nAGE-SECRET-KEY-1ABC"));
        assert!(looks_like_key("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl"));
        assert!(looks_like_key("age-secret-key-1abc"));
        assert!(!looks_like_key("/home/me/.claude-orca/age-identity.txt"));
        let e = parse_recipient("age-secret-key-1qqqq")
            .err()
            .unwrap()
            .to_string();
        assert!(!e.contains("qqqq"), "{e}");
    }
}
