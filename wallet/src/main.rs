//! `bitplace-wallet`: create or import a BIP39 wallet, receive, balance, history, send,
//! and watch balances live (server-sent events, never polling).

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use consensus::Address;
use serde_json::json;
use std::io::{BufRead, Write};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;
use wallet::client::{BalanceEvent, NodeClient, Reconnect};
use wallet::{KdfParams, Keystore, Mnemonic};
use zeroize::Zeroizing;

const PASSPHRASE_ENV: &str = "BITPLACE_WALLET_PASSPHRASE";
const BIP39_PASSPHRASE_ENV: &str = "BITPLACE_WALLET_BIP39_PASSPHRASE";

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
    Import {
        #[arg(long, value_name = "WORDS")]
        mnemonic: String,
        /// Also ask for a BIP39 passphrase (or read BITPLACE_WALLET_BIP39_PASSPHRASE)
        #[arg(long)]
        bip39_passphrase: bool,
    },
    /// Show the receive address (--new hands out a fresh one)
    Address {
        #[arg(long)]
        new: bool,
    },
    /// Confirmed, unconfirmed and immature balance over all the wallet's addresses
    Balance,
    /// Transactions touching the wallet, newest first
    History,
    /// Pay an address; prints the txid
    Send {
        #[arg(long, value_name = "ADDR")]
        to: String,
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        amount: u64,
        /// Fee rate in units per 1000 bytes of encoded transaction
        #[arg(long, value_name = "R", default_value_t = 1)]
        fee_rate: u64,
    },
    /// Print each balance change of the wallet's addresses as the node pushes it
    Watch,
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
            eprintln!("{} (see --help)", msg.join(" "));
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
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

fn read_secret(env: &str, prompt: &str, confirm: bool) -> Result<Zeroizing<String>> {
    if let Ok(v) = std::env::var(env) {
        return Ok(Zeroizing::new(v));
    }
    let first = Zeroizing::new(
        rpassword::prompt_password(prompt)
            .map_err(|e| anyhow!("cannot ask for the passphrase (no terminal: {e}); set {env}"))?,
    );
    if confirm {
        let again = Zeroizing::new(
            rpassword::prompt_password("Repeat it: ").map_err(|e| anyhow!("cannot read: {e}"))?,
        );
        if *first != *again {
            bail!("the two entries do not match");
        }
    }
    Ok(first)
}

fn wallet_passphrase(confirm: bool) -> Result<Zeroizing<String>> {
    read_secret(PASSPHRASE_ENV, "Wallet passphrase: ", confirm)
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

fn run(cli: Cli) -> Result<()> {
    let path = wallet_path(&cli)?;
    match &cli.command {
        Command::Create {
            words,
            bip39_passphrase: ask,
        } => {
            if path.exists() {
                bail!(
                    "a wallet already exists at {}; refusing to overwrite it",
                    path.display()
                );
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
                bail!(
                    "a wallet already exists at {}; refusing to overwrite it",
                    path.display()
                );
            }
            let bip39 = bip39_passphrase(*ask)?;
            let pass = wallet_passphrase(true)?;
            let (ks, _) = Keystore::create(&path, &mnemonic, &bip39, &pass, KdfParams::DEFAULT)?;
            let address = ks.addresses()[0];
            if cli.json {
                print_json(json!({ "address": address }))?;
            } else {
                println!("Wallet imported (encrypted) to {}", path.display());
                println!("Receive address: {address}");
            }
        }
        Command::Address { new } => {
            let mut ks = Keystore::open(&path)?;
            let address = if *new {
                let pass = wallet_passphrase(false)?;
                let unlocked = ks.unlock(&pass)?;
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
            let h = wallet::ops::history(&client, ks.addresses())?;
            if cli.json {
                print_json(json!({ "history": h }))?;
            } else if h.is_empty() {
                println!("no transactions");
            } else {
                for e in h {
                    let height = e.height.map_or("mempool".to_string(), |h| h.to_string());
                    println!("{}  {:>10}  {:+}", e.txid, height, e.delta);
                }
            }
        }
        Command::Send {
            to,
            amount,
            fee_rate,
        } => {
            // A mistyped address is rejected before anything else happens.
            let to: Address = to
                .trim()
                .parse()
                .with_context(|| format!("invalid --to address `{to}`"))?;
            let ks = Keystore::open(&path)?;
            let client = NodeClient::new(&cli.node)?;
            let pass = wallet_passphrase(false)?;
            let unlocked = ks.unlock(&pass)?;
            let (txid, _selection) = wallet::ops::send(
                &client,
                unlocked.keychain(),
                ks.addresses(),
                to,
                *amount,
                *fee_rate,
            )?;
            if cli.json {
                print_json(json!({ "txid": txid }))?;
            } else {
                println!("{txid}");
            }
        }
        Command::Watch => {
            let ks = Keystore::open(&path)?;
            let client = NodeClient::new(&cli.node)?;
            let topics: Vec<String> = ks
                .addresses()
                .iter()
                .map(|a| format!("address:{a}"))
                .collect();
            let json = cli.json;
            let mut failure: Option<anyhow::Error> = None;
            client.follow_events(
                &topics,
                None,
                Reconnect::default(),
                |ev| {
                    if ev.event != "balance" {
                        return ControlFlow::Continue(());
                    }
                    let result = serde_json::from_str::<BalanceEvent>(&ev.data)
                        .with_context(|| format!("bad balance event from the node: {}", ev.data))
                        .and_then(|b| {
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
                        });
                    match result {
                        Ok(()) => ControlFlow::Continue(()),
                        Err(e) => {
                            failure = Some(e);
                            ControlFlow::Break(())
                        }
                    }
                },
                |err, delay| {
                    eprintln!("event stream interrupted ({err}); reconnecting in {delay:?}");
                },
            )?;
            if let Some(e) = failure {
                return Err(e);
            }
        }
    }
    Ok(())
}
