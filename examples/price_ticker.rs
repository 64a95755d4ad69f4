//! A price ticker: the program publishes its own events to every browser, instead
//! of the clock.
//!
//! ```sh
//! cargo run --example price_ticker     # then open http://127.0.0.1:8080/
//! ```
//!
//! The page prints each price in its log. The program publishes one price a second
//! for a minute, then closes every client and ends.

use std::thread;
use std::time::Duration;

use tickcast::{Config, Server};

fn main() -> Result<(), tickcast::Error> {
    let server = Server::start(Config {
        interval: None,      // no clock: only our prices
        ..Config::default()  // the page on 127.0.0.1:8080, WebSocket on :40132
    })?;
    println!("open {}", server.page_url().unwrap_or_default());
    let publisher = server.publisher(); // Clone + Send: any thread may publish
                                        // A made-up price that wanders up and down, in hundredths.
    let mut cents: u64 = 10_000;
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..60 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        cents = (cents + seed % 201).saturating_sub(100).max(1);
        let price = format!(
            r#"{{"type":"price","symbol":"TICK","price":{}.{:02},"clients":{}}}"#,
            cents / 100,
            cents % 100,
            server.clients()
        );
        publisher.publish_text(price)?;
        thread::sleep(Duration::from_secs(1));
    }
    server.shutdown(); // close 1001 to every client, join every thread
    Ok(())
}
