//! A chat room where the program, not the echo, answers: every message a client
//! sends goes to everyone, with who said it; a newcomer is greeted by name.
//!
//! ```sh
//! cargo run --example chat     # then open http://127.0.0.1:8080/ in two tabs
//! ```
//!
//! Type in one tab and both see it. Press Enter (or Ctrl-D) in the terminal to
//! stop. The program reads the client events on a thread of its own; the server's
//! threads never wait for it (see `tickcast::ClientEvents`).

use std::io::BufRead;
use std::thread;

use tickcast::{ClientEvent, Config, Server};

fn main() -> Result<(), tickcast::Error> {
    let server = Server::start(Config {
        echo: false,                // the program answers, not the echo
        client_events: Some(1_024), // joins, messages and leaves, to read below
        ..Config::default()
    })?;
    println!(
        "open {} in two tabs; press Enter here to stop",
        server.page_url().unwrap_or_default()
    );
    let events = server.client_events().expect("asked for in the config");
    let publisher = server.publisher();
    // Ends when the server has shut down and every event has been read.
    let room = thread::spawn(move || {
        for event in events {
            let said = match event {
                ClientEvent::Joined { id, .. } => {
                    // To the newcomer alone; the others see a `join` notice anyway.
                    let _ = publisher.send_to(id, format!("welcome, client {id}!"));
                    continue;
                }
                ClientEvent::Text { id, text } => format!("client {id}: {text}"),
                ClientEvent::Binary { id, data } => {
                    format!("client {id} sent {} bytes", data.len())
                }
                ClientEvent::Left { id, reason } => {
                    format!("client {id} left ({})", reason.as_str())
                }
                _ => continue,
            };
            // `line` messages are shown by the page as they are.
            if publisher.publish_line(&said).is_err() {
                break; // the server has stopped
            }
        }
    });
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    server.shutdown();
    let _ = room.join();
    Ok(())
}
