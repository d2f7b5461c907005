//! `bitplace-wallet`: create or import a BIP39 wallet, receive, balance, history, send,
//! and watch balances live (server-sent events, never polling).

use anyhow::{anyhow, Context, Result};
use clap::{Parser, Subcommand};
use consensus::Address;
use serde_json::json;
use std::cell::{Cell, RefCell};
use std::io::{BufRead, IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;
use wallet::client::{BalanceEvent, NodeClient, Reconnect};
use wallet::coinselect::{Amount, Selection};
use wallet::{KdfParams, Keychain, Keystore, KeystoreError, Mnemonic, UnlockedWallet};
use zeroize::Zeroizing;

const PASSPHRASE_ENV: &str = "BITPLACE_WALLET_PASSPHRASE";
const BIP39_PASSPHRASE_ENV: &str = "BITPLACE_WALLET_BIP39_PASSPHRASE";
/// Passphrase attempts on a terminal before giving up.
const UNLOCK_TRIES: u32 = 3;

/// The binary's own refusals (the library's are its typed errors).
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("not sent: the payment was not confirmed")]
    Cancelled,
    #[error("the two entries do not match")]
    EntriesDiffer,
    #[error("cannot ask for the passphrase (no terminal: {reason}); set {env}")]
    NoTerminal { reason: String, env: &'static str },
}

#[derive(Parser)]
#[command(
    name = "bitplace-wallet",
    version,
    about = "Bitplace wallet: keys stay on this machine, encrypted at rest",
    after_help = "The wallet passphrase is asked for on the terminal, or read from \
                  BITPLACE_WALLET_PASSPHRASE for scripts. Keys: BIP39 mnemonic, SLIP-0010 \
                  ed25519 along m/44'/8080'/0'/<index>'."
)]
struct Cli {
    /// Wallet file [default: <data dir>/bitplace/wallet.json]
    #[arg(long, global = true, value_name = "FILE")]
    wallet: Option<PathBuf>,
    /// Node API base URL
    #[arg(
        long,
        global = true,
        value_name = "URL",
        default_value = "http://127.0.0.1:8080"
    )]
    node: String,
    /// Print one JSON object per command (per event for `watch`) on stdout
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a wallet with a new mnemonic (shown once)
    Create {
        /// Number of mnemonic words
        #[arg(long, default_value_t = 12, value_parser = parse_words)]
        words: usize,
        /// Also ask for a BIP39 passphrase (or read BITPLACE_WALLET_BIP39_PASSPHRASE)
        #[arg(long)]
        bip39_passphrase: bool,
    },
    /// Import a wallet from its mnemonic ("-" reads it from stdin)
    ///
    /// Then finds every address the wallet used (in index order, until 20 in a row have no
    /// history on the node, as BIP44 wallets do) so the restore sees all its funds.
    Import {
        #[arg(long, value_name = "WORDS")]
        mnemonic: String,
        /// Also ask for a BIP39 passphrase (or read BITPLACE_WALLET_BIP39_PASSPHRASE)
        #[arg(long)]
        bip39_passphrase: bool,
        /// Do not ask the node which addresses were used (keep address 0 only; run `scan`
        /// later)
        #[arg(long)]
        no_scan: bool,
    },
    /// Look for used addresses past the ones handed out (20 unused in a row end the scan)
    /// and add them
    Scan,
    /// Show the receive address (--new hands out a fresh one)
    Address {
        #[arg(long)]
        new: bool,
    },
    /// Confirmed, unconfirmed and immature balance over all the wallet's addresses
    Balance,
    /// Transactions touching the wallet, newest first: time, direction, counterparty,
    /// amount, fee, confirmations
    History,
    /// Pay an address; prints the txid
    ///
    /// Shows amount, fee and recipient before signing; on a terminal asks to confirm them
    /// (--yes does not ask). Without a terminal on stdin it sends without asking, so
    /// scripts keep working.
    Send {
        #[arg(long, value_name = "ADDR")]
        to: String,
        /// Units to pay, or `all`: everything spendable minus the fee
        #[arg(long, value_name = "N|all", value_parser = parse_amount)]
        amount: Amount,
        /// Fee rate in units per 1000 bytes of encoded transaction (fee = ceil(size × R /
        /// 1000), never below the node's minimum relay fee)
        #[arg(long, value_name = "R", default_value_t = consensus::fee::DEFAULT_FEE_RATE)]
        fee_rate: u64,
        /// Do not ask for confirmation
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Print the current balance, then each change of the wallet's addresses as the node
    /// pushes it (waits for a node that is not up yet)
    Watch,
}

fn parse_amount(s: &str) -> Result<Amount, String> {
    if s.eq_ignore_ascii_case("all") {
        return Ok(Amount::All);
    }
    match s.parse::<u64>() {
        Ok(0) => Err("must be at least 1 (or `all`)".into()),
        Ok(n) => Ok(Amount::Exact(n)),
        Err(_) => Err("must be a whole number of units or `all`".into()),
    }
}

fn parse_words(s: &str) -> Result<usize, String> {
    match s {
        "12" => Ok(12),
        "24" => Ok(24),
        _ => Err("must be 12 or 24".into()),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // One line: the message (and its indented details), without the usage block.
            let text = e.render().to_string();
            let msg: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty() && !l.starts_with("Usage:"))
                .map(str::trim)
                .collect();
            let msg = msg.join(" ");
            eprintln!("{msg} (see --help)");
            // The arguments did not parse, so look for --json among them as given.
            if std::env::args_os().skip(1).any(|a| a == "--json") {
                let msg = msg.strip_prefix("error: ").unwrap_or(&msg);
                let _ = print_json(json!({ "error": "usage", "message": msg }));
            }
            return ExitCode::from(2);
        }
    };
    let json = cli.json;
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            if json {
                let _ = print_json(error_json(&e));
            }
            ExitCode::FAILURE
        }
    }
}

/// `{"error": <kind>, "message": <text>}` for `--json` (a node's refusal adds its `code`
/// and HTTP `status`). The kinds are stable, documented in docs/API.md.
fn error_json(e: &anyhow::Error) -> serde_json::Value {
    let message = format!("{e:#}").replace('\n', " ");
    let mut v = json!({ "error": "error", "message": message });
    for cause in e.chain() {
        if let Some((kind, extra)) = kind_of(cause) {
            v["error"] = json!(kind);
            if let Some((code, status)) = extra {
                v["code"] = json!(code);
                v["status"] = json!(status);
            }
            break;
        }
    }
    v
}

type Extra = Option<(String, u16)>;

fn node_kind(e: &wallet::NodeError) -> (&'static str, Extra) {
    use wallet::NodeError as N;
    match e {
        N::BadUrl { .. } => ("bad_node_url", None),
        N::Unreachable { .. } => ("node_unreachable", None),
        N::Rejected { status, code, .. } => ("node_rejected", Some((code.clone(), *status))),
        _ => ("node_protocol", None),
    }
}

fn send_kind(e: &wallet::SendError) -> &'static str {
    use wallet::SendError as S;
    match e {
        S::InsufficientFunds { .. } | S::NothingToSweep { .. } => "insufficient_funds",
        S::ZeroAmount => "invalid_amount",
        S::Overflow => "overflow",
        _ => "derivation",
    }
}

/// The stable kind of one error of the chain, if it is one the wallet knows.
fn kind_of(e: &(dyn std::error::Error + 'static)) -> Option<(&'static str, Extra)> {
    if let Some(e) = e.downcast_ref::<CliError>() {
        return Some((
            match e {
                CliError::Cancelled => "cancelled",
                CliError::EntriesDiffer => "passphrase_mismatch",
                CliError::NoTerminal { .. } => "no_passphrase",
            },
            None,
        ));
    }
    if let Some(e) = e.downcast_ref::<KeystoreError>() {
        return Some((
            match e {
                KeystoreError::WrongPassphrase(_) => "wrong_passphrase",
                KeystoreError::Exists(_) => "wallet_exists",
                KeystoreError::NotFound(_) => "no_wallet",
                KeystoreError::Format { .. } | KeystoreError::AddressMismatch(_) => {
                    "bad_wallet_file"
                }
                KeystoreError::EmptyPassphrase => "empty_passphrase",
                KeystoreError::Mnemonic(_) => "invalid_mnemonic",
                KeystoreError::Io { .. } => "io",
                _ => "keystore",
            },
            None,
        ));
    }
    if e.downcast_ref::<wallet::MnemonicError>().is_some() {
        return Some(("invalid_mnemonic", None));
    }
    if e.downcast_ref::<consensus::address::AddressError>()
        .is_some()
    {
        return Some(("invalid_address", None));
    }
    if let Some(e) = e.downcast_ref::<wallet::NodeError>() {
        return Some(node_kind(e));
    }
    if let Some(e) = e.downcast_ref::<wallet::SendError>() {
        return Some((send_kind(e), None));
    }
    if let Some(e) = e.downcast_ref::<wallet::WalletError>() {
        // Transparent wrappers: their source() skips the wrapped error, so look inside.
        return Some(match e {
            wallet::WalletError::Node(n) => node_kind(n),
            wallet::WalletError::Send(s) => (send_kind(s), None),
            wallet::WalletError::Overflow => ("overflow", None),
            _ => ("derivation", None),
        });
    }
    if e.downcast_ref::<std::io::Error>().is_some() {
        return Some(("io", None));
    }
    None
}

fn wallet_path(cli: &Cli) -> Result<PathBuf> {
    match &cli.wallet {
        Some(p) => Ok(p.clone()),
        None => Ok(dirs::data_dir()
            .ok_or_else(|| anyhow!("cannot find the user's data directory; pass --wallet FILE"))?
            .join("bitplace")
            .join("wallet.json")),
    }
}

fn read_secret(env: &'static str, prompt: &str, confirm: bool) -> Result<Zeroizing<String>> {
    if let Ok(v) = std::env::var(env) {
        return Ok(Zeroizing::new(v));
    }
    let first = prompt_secret(env, prompt)?;
    if confirm {
        let again = Zeroizing::new(
            rpassword::prompt_password("Repeat it: ").map_err(|e| anyhow!("cannot read: {e}"))?,
        );
        if *first != *again {
            return Err(CliError::EntriesDiffer.into());
        }
    }
    Ok(first)
}

/// Asks on the terminal (rpassword reads /dev/tty, echo off).
fn prompt_secret(env: &'static str, prompt: &str) -> Result<Zeroizing<String>> {
    Ok(Zeroizing::new(rpassword::prompt_password(prompt).map_err(
        |e| CliError::NoTerminal {
            reason: e.to_string(),
            env,
        },
    )?))
}

fn wallet_passphrase(confirm: bool) -> Result<Zeroizing<String>> {
    read_secret(PASSPHRASE_ENV, "Wallet passphrase: ", confirm)
}

/// Unlocks the keystore: with BITPLACE_WALLET_PASSPHRASE once (a script's wrong value
/// stays wrong), or on the terminal with [`UNLOCK_TRIES`] attempts.
fn unlock(ks: &Keystore) -> Result<UnlockedWallet> {
    if let Ok(v) = std::env::var(PASSPHRASE_ENV) {
        return Ok(ks.unlock(&v)?);
    }
    unlock_with_retries(
        ks,
        UNLOCK_TRIES,
        || prompt_secret(PASSPHRASE_ENV, "Wallet passphrase: "),
        |left| eprintln!("wrong passphrase; try again ({left} left)"),
    )
}

/// Asks up to `tries` times; a wrong passphrase asks again (telling how many tries are
/// left), anything else — and the last wrong one — is the error.
fn unlock_with_retries(
    ks: &Keystore,
    tries: u32,
    mut ask: impl FnMut() -> Result<Zeroizing<String>>,
    mut tell: impl FnMut(u32),
) -> Result<UnlockedWallet> {
    let mut attempt = 1;
    loop {
        let pass = ask()?;
        match ks.unlock(&pass) {
            Ok(w) => return Ok(w),
            Err(KeystoreError::WrongPassphrase(_)) if attempt < tries => {
                tell(tries - attempt);
                attempt += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// What the user is asked to confirm: amount, fee, recipient (and how the fee was found).
// The relay floor is 0 today (clippy sees a no-op); the summary must show it once raised.
#[allow(clippy::unnecessary_min_or_max)]
fn send_summary(s: &Selection, to: &Address, fee_rate: u64) -> String {
    let rate = fee_rate.max(consensus::fee::MIN_RELAY_FEE_RATE);
    let change = if s.change > 0 {
        format!(", change {} back to the wallet", s.change)
    } else {
        String::new()
    };
    format!(
        "Pay {} to {to}\n  fee {} ({} bytes at {rate} per 1000 bytes), total {} from {} input(s){change}",
        s.amount,
        s.fee,
        s.size,
        s.amount.saturating_add(s.fee),
        s.inputs.len(),
    )
}

/// Shows `summary` and reads the answer: only `y` or `yes` (any case) confirms; end of
/// input does not.
fn confirm(summary: &str, input: &mut impl BufRead, out: &mut impl Write) -> Result<bool> {
    write!(out, "{summary}\nSend it? [y/N] ")?;
    out.flush()?;
    let mut answer = String::new();
    input.read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` UTC (Hinnant's days-to-civil, so no date crate).
fn utc(secs: u64) -> String {
    // humantime writes `YYYY-MM-DDTHH:MM:SSZ`; the table shows `YYYY-MM-DD HH:MM:SS`.
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    let rfc = humantime::format_rfc3339_seconds(t).to_string();
    rfc.trim_end_matches('Z').replacen('T', " ", 1)
}

/// The history as a table a person reads.
fn history_table(rows: &[wallet::HistoryRow]) -> String {
    let mut out = format!(
        "{:<19}  {:<4}  {:<42}  {:>14}  {:>8}  {:>5}  {}\n",
        "TIME (UTC)", "DIR", "COUNTERPARTY", "AMOUNT", "FEE", "CONF", "TXID"
    );
    for r in rows {
        let time = r.time.map_or_else(|| "in mempool".to_string(), utc);
        let signed = match r.direction {
            wallet::Direction::In => format!("+{}", r.amount),
            wallet::Direction::Out => format!("-{}", r.amount),
            wallet::Direction::SelfTransfer => r.amount.to_string(),
        };
        let fee = if r.fee == 0 && r.direction == wallet::Direction::In {
            "-".to_string()
        } else {
            r.fee.to_string()
        };
        let who = r.counterparty.as_deref().unwrap_or("(own addresses)");
        out.push_str(&format!(
            "{time:<19}  {:<4}  {who:<42}  {signed:>14}  {fee:>8}  {:>5}  {}\n",
            r.direction.as_str(),
            r.confirmations,
            r.txid
        ));
    }
    out
}

fn bip39_passphrase(asked: bool) -> Result<Zeroizing<String>> {
    if asked || std::env::var_os(BIP39_PASSPHRASE_ENV).is_some() {
        read_secret(BIP39_PASSPHRASE_ENV, "BIP39 passphrase: ", true)
    } else {
        Ok(Zeroizing::new(String::new()))
    }
}

fn print_json(v: serde_json::Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{v}")?;
    out.flush()?;
    Ok(())
}

fn print_balance_event(b: &BalanceEvent, json: bool) -> Result<()> {
    if json {
        print_json(json!({
            "address": b.address,
            "confirmed": b.confirmed,
            "unconfirmed": b.unconfirmed,
            "immature": b.immature,
        }))
    } else {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "{}  confirmed {}  unconfirmed {:+}  immature {}",
            b.address, b.confirmed, b.unconfirmed, b.immature
        )?;
        out.flush()?;
        Ok(())
    }
}

/// `watch`'s first lines: each address's balance now, in the events' own shape (so a
/// consumer of `--json` reads one kind of line), then the total for a person.
fn print_balances(infos: &[wallet::AddressInfo], json: bool) -> Result<()> {
    let mut total = wallet::Balance::default();
    for i in infos {
        print_balance_event(
            &BalanceEvent {
                address: i.address,
                confirmed: i.confirmed,
                unconfirmed: i.unconfirmed,
                immature: i.immature,
            },
            json,
        )?;
        total.confirmed = total.confirmed.saturating_add(i.confirmed);
        total.unconfirmed = total.unconfirmed.saturating_add(i.unconfirmed);
        total.immature = total.immature.saturating_add(i.immature);
    }
    if !json {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "balance now: confirmed {}  unconfirmed {:+}  immature {}  ({} addresses); watching for changes",
            total.confirmed,
            total.unconfirmed,
            total.immature,
            infos.len()
        )?;
        out.flush()?;
    }
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    let path = wallet_path(&cli)?;
    match &cli.command {
        Command::Create {
            words,
            bip39_passphrase: ask,
        } => {
            if path.exists() {
                return Err(KeystoreError::Exists(path).into());
            }
            let mnemonic = Mnemonic::generate(*words)?;
            let bip39 = bip39_passphrase(*ask)?;
            let pass = wallet_passphrase(true)?;
            let (ks, _) = Keystore::create(&path, &mnemonic, &bip39, &pass, KdfParams::DEFAULT)?;
            let address = ks.addresses()[0];
            let phrase = mnemonic.phrase();
            if cli.json {
                print_json(json!({ "address": address, "mnemonic": phrase.as_str() }))?;
            } else {
                println!(
                    "Write these {words} words down, in order, and keep them offline.\n\
                     They are shown only this once; whoever has them controls the funds.\n\n  {}\n",
                    phrase.as_str()
                );
                println!("Wallet saved (encrypted) to {}", path.display());
                println!("Receive address: {address}");
            }
        }
        Command::Import {
            mnemonic,
            bip39_passphrase: ask,
            no_scan,
        } => {
            let phrase = if mnemonic == "-" {
                let mut line = Zeroizing::new(String::new());
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .context("reading the mnemonic from stdin")?;
                line
            } else {
                Zeroizing::new(mnemonic.clone())
            };
            let mnemonic = Mnemonic::parse(&phrase)?;
            if path.exists() {
                return Err(KeystoreError::Exists(path).into());
            }
            let bip39 = bip39_passphrase(*ask)?;
            let pass = wallet_passphrase(true)?;
            // A restore must see every address the wallet handed out, not just address 0.
            // Without a node the wallet is still saved (the mnemonic is what matters) and
            // `scan` finds the rest later.
            let (count, scanned) = if *no_scan {
                (1, false)
            } else {
                let keychain = Keychain::from_mnemonic(&mnemonic, &bip39, 0)?;
                match NodeClient::new(&cli.node)
                    .map_err(wallet::WalletError::from)
                    .and_then(|c| wallet::ops::discover(&c, &keychain, 1))
                {
                    Ok(n) => (n, true),
                    Err(wallet::WalletError::Node(e)) if !e.is_permanent() => {
                        eprintln!(
                            "warning: no used addresses looked for ({e}); run `bitplace-wallet scan` once the node is up"
                        );
                        (1, false)
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            let (ks, _) = Keystore::create_with_addresses(
                &path,
                &mnemonic,
                &bip39,
                &pass,
                KdfParams::DEFAULT,
                count,
            )?;
            let address = *ks.addresses().last().expect("at least one address");
            if cli.json {
                print_json(json!({
                    "address": address,
                    "addresses": ks.addresses().len(),
                    "scanned": scanned,
                }))?;
            } else {
                println!("Wallet imported (encrypted) to {}", path.display());
                if scanned {
                    println!(
                        "Addresses in use: {} (scanned until {} unused in a row)",
                        ks.addresses().len(),
                        wallet::GAP_LIMIT
                    );
                }
                println!("Receive address: {address}");
            }
        }
        Command::Scan => {
            let mut ks = Keystore::open(&path)?;
            let client = NodeClient::new(&cli.node)?;
            let unlocked = unlock(&ks)?;
            let have = ks.addresses().len() as u32;
            let n = wallet::ops::discover(&client, unlocked.keychain(), have)?;
            let added = ks.ensure_addresses(&unlocked, n)?;
            if cli.json {
                print_json(json!({ "addresses": ks.addresses().len(), "added": added }))?;
            } else {
                println!(
                    "Addresses in use: {} ({added} added; scanned until {} unused in a row)",
                    ks.addresses().len(),
                    wallet::GAP_LIMIT
                );
            }
        }
        Command::Address { new } => {
            let mut ks = Keystore::open(&path)?;
            let address = if *new {
                let unlocked = unlock(&ks)?;
                ks.new_address(&unlocked)?
            } else {
                *ks.addresses()
                    .last()
                    .expect("a keystore has at least one address")
            };
            if cli.json {
                print_json(json!({ "address": address }))?;
            } else {
                println!("{address}");
            }
        }
        Command::Balance => {
            let ks = Keystore::open(&path)?;
            let client = NodeClient::new(&cli.node)?;
            let b = wallet::ops::balance(&client, ks.addresses())?;
            if cli.json {
                print_json(json!({
                    "confirmed": b.confirmed,
                    "unconfirmed": b.unconfirmed,
                    "immature": b.immature,
                }))?;
            } else {
                println!("confirmed:   {}", b.confirmed);
                println!("unconfirmed: {:+}", b.unconfirmed);
                println!("immature:    {}", b.immature);
            }
        }
        Command::History => {
            let ks = Keystore::open(&path)?;
            let client = NodeClient::new(&cli.node)?;
            let h = wallet::ops::history_rows(&client, ks.addresses())?;
            if cli.json {
                print_json(json!({ "history": h }))?;
            } else if h.is_empty() {
                println!("no transactions");
            } else {
                print!("{}", history_table(&h));
            }
        }
        Command::Send {
            to,
            amount,
            fee_rate,
            yes,
        } => {
            // A mistyped address is rejected before anything else happens.
            let to: Address = to
                .trim()
                .parse()
                .with_context(|| format!("invalid --to address `{to}`"))?;
            let ks = Keystore::open(&path)?;
            let client = NodeClient::new(&cli.node)?;
            // A wrong passphrase stops here, before the node hears anything.
            let unlocked = unlock(&ks)?;
            let selection = wallet::ops::prepare_send(&client, ks.addresses(), *amount, *fee_rate)?;
            // Shown before anything is signed. A person at a terminal confirms it (unless
            // --yes); a script (stdin not a terminal) proceeds as before, and sees the fee
            // in the result.
            let summary = send_summary(&selection, &to, *fee_rate);
            let interactive = std::io::stdin().is_terminal();
            if interactive && !*yes {
                let ok = confirm(
                    &summary,
                    &mut std::io::stdin().lock(),
                    &mut std::io::stderr().lock(),
                )?;
                if !ok {
                    return Err(CliError::Cancelled.into());
                }
            } else if interactive || std::io::stderr().is_terminal() {
                eprintln!("{summary}");
            }
            let txid = wallet::ops::sign_and_submit(&client, unlocked.keychain(), &selection, to)?;
            if cli.json {
                print_json(json!({
                    "txid": txid,
                    "to": to,
                    "amount": selection.amount,
                    "fee": selection.fee,
                    "fee_rate": fee_rate.max(&consensus::fee::MIN_RELAY_FEE_RATE),
                    "size": selection.size,
                    "change": selection.change,
                    "inputs": selection.inputs.len(),
                }))?;
            } else {
                println!("{txid}");
            }
        }
        Command::Watch => {
            let ks = Keystore::open(&path)?;
            let client = NodeClient::new(&cli.node)?;
            let addresses = ks.addresses().to_vec();
            let topics: Vec<String> = addresses.iter().map(|a| format!("address:{a}")).collect();
            let json = cli.json;
            let failure: RefCell<Option<anyhow::Error>> = RefCell::new(None);
            let shown = Cell::new(false);
            let node = client.base_url().to_string();
            client.wait_and_follow_events(
                &topics,
                Reconnect::default(),
                // Once the stream is open (so no change can slip between the two), the
                // current balance first; everything after it arrives as events.
                || {
                    if shown.get() {
                        return Ok(());
                    }
                    let mut infos = Vec::with_capacity(addresses.len());
                    for a in &addresses {
                        infos.push(client.address(a)?);
                    }
                    shown.set(true);
                    if let Err(e) = print_balances(&infos, json) {
                        *failure.borrow_mut() = Some(e);
                    }
                    Ok(())
                },
                |ev| {
                    if failure.borrow().is_some() {
                        return ControlFlow::Break(());
                    }
                    if ev.event != "balance" {
                        return ControlFlow::Continue(());
                    }
                    let result = serde_json::from_str::<BalanceEvent>(&ev.data)
                        .with_context(|| format!("bad balance event from the node: {}", ev.data))
                        .and_then(|b| print_balance_event(&b, json));
                    match result {
                        Ok(()) => ControlFlow::Continue(()),
                        Err(e) => {
                            *failure.borrow_mut() = Some(e);
                            ControlFlow::Break(())
                        }
                    }
                },
                |err, delay| {
                    if shown.get() {
                        eprintln!("event stream interrupted ({err}); reconnecting in {delay:?}");
                    } else {
                        eprintln!("waiting for the node at {node} ({err}); retrying in {delay:?}");
                    }
                },
            )?;
            if let Some(e) = failure.into_inner() {
                return Err(e);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wallet::coinselect::Spendable;

    const PHRASE: &str =
        "legal winner thank year wave sausage worth useful legal winner thank yellow";

    #[test]
    fn a_wrong_passphrase_can_be_retried_on_a_terminal() {
        let dir = tempfile::tempdir().unwrap();
        let m = Mnemonic::parse(PHRASE).unwrap();
        let (ks, _) = Keystore::create(
            &dir.path().join("w.json"),
            &m,
            "",
            "right",
            KdfParams::INSECURE_FAST,
        )
        .unwrap();
        let answers = |list: &'static [&'static str]| {
            let mut it = list.iter();
            move || {
                Ok(Zeroizing::new(
                    it.next().expect("asked too often").to_string(),
                ))
            }
        };
        // Two wrong, then right: unlocked, told twice how many tries are left.
        let mut told = Vec::new();
        unlock_with_retries(&ks, UNLOCK_TRIES, answers(&["a", "b", "right"]), |l| {
            told.push(l)
        })
        .unwrap();
        assert_eq!(told, vec![2, 1]);
        // Three wrong: the wrong-passphrase error, after exactly three questions.
        let mut told = Vec::new();
        let err = unlock_with_retries(&ks, UNLOCK_TRIES, answers(&["a", "b", "c"]), |l| {
            told.push(l)
        })
        .unwrap_err();
        assert!(matches!(
            err.downcast_ref::<KeystoreError>(),
            Some(KeystoreError::WrongPassphrase(_))
        ));
        assert_eq!(told, vec![2, 1]);
        assert_eq!(error_json(&err)["error"], "wrong_passphrase");
    }

    fn selection() -> Selection {
        Selection {
            inputs: vec![Spendable {
                outpoint: consensus::OutPoint {
                    txid: consensus::Hash256([1; 32]),
                    vout: 0,
                },
                amount: 1_000,
                key_index: 0,
            }],
            amount: 700,
            fee: 1,
            change: 299,
            size: 195,
        }
    }

    #[test]
    fn an_interactive_send_shows_amount_fee_and_recipient_and_needs_a_yes() {
        let to = Address([9; 20]);
        let summary = send_summary(&selection(), &to, 1);
        assert!(summary.contains("Pay 700 to "), "{summary}");
        assert!(summary.contains(&to.to_string()), "{summary}");
        assert!(
            summary.contains("fee 1 (195 bytes at 1 per 1000 bytes)"),
            "{summary}"
        );
        assert!(summary.contains("total 701"), "{summary}");
        for (answer, sent) in [
            ("y\n", true),
            ("YES\n", true),
            ("n\n", false),
            ("\n", false),
            ("", false),
            ("yep\n", false),
        ] {
            let mut shown = Vec::new();
            let got = confirm(&summary, &mut answer.as_bytes(), &mut shown).unwrap();
            assert_eq!(got, sent, "{answer:?}");
            let shown = String::from_utf8(shown).unwrap();
            assert!(shown.starts_with(&summary) && shown.ends_with("[y/N] "));
        }
        assert_eq!(
            error_json(&anyhow::Error::from(CliError::Cancelled))["error"],
            "cancelled"
        );
    }

    #[test]
    fn json_errors_name_their_kind() {
        let e: anyhow::Error = wallet::WalletError::Node(wallet::NodeError::Rejected {
            status: 409,
            code: "double_spend".into(),
            message: "input already spent".into(),
        })
        .into();
        let v = error_json(&e);
        assert_eq!(v["error"], "node_rejected");
        assert_eq!(v["code"], "double_spend");
        assert_eq!(v["status"], 409);
        assert!(v["message"]
            .as_str()
            .unwrap()
            .contains("input already spent"));
        let e = anyhow::Error::from("bp1x".parse::<Address>().unwrap_err())
            .context("invalid --to address `bp1x`");
        assert_eq!(error_json(&e)["error"], "invalid_address");
        assert_eq!(error_json(&anyhow!("something else"))["error"], "error");
    }

    #[test]
    fn history_is_a_table_with_time_direction_counterparty_amount_fee_confirmations() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_796_212_800), "2026-12-02 12:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        let row = |direction, time: Option<u64>, amount, fee| wallet::HistoryRow {
            txid: consensus::Hash256([3; 32]),
            height: time.map(|_| 5),
            delta: 0,
            time,
            direction,
            counterparty: Some(Address([8; 20]).to_string()),
            amount,
            fee,
            confirmations: u64::from(time.is_some()) * 2,
        };
        let table = history_table(&[
            row(wallet::Direction::Out, None, 40, 1),
            row(wallet::Direction::In, Some(1_796_212_800), 600, 0),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        for col in [
            "TIME (UTC)",
            "DIR",
            "COUNTERPARTY",
            "AMOUNT",
            "FEE",
            "CONF",
            "TXID",
        ] {
            assert!(lines[0].contains(col), "{}", lines[0]);
        }
        assert!(lines[1].starts_with("in mempool") && lines[1].contains(" out "));
        assert!(
            lines[1].contains(" -40 ") && lines[1].contains(" 1 "),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].starts_with("2026-12-02 12:00:00  in "),
            "{}",
            lines[2]
        );
        assert!(lines[2].contains("+600") && lines[2].contains(&Address([8; 20]).to_string()));
    }
}
