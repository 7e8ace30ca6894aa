//! The wide-area link of the benchmark (testbed::LinkProxy): bytes arrive intact and in order
//! in both directions, never sooner than the model allows (half a round trip each way, the
//! rate's serialization time), and an IMAP session works through it.

use std::time::{Duration, Instant};

use testbed::{Dovecot, DovecotOptions, LinkModel, LinkProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_cross_the_link_intact_in_order_and_no_sooner_than_its_delay_and_rate() {
    // An echo server behind a 40 ms, 8 Mbit/s link.
    let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_port = echo.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut s, _) = echo.accept().await.unwrap();
        let (mut r, mut w) = s.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
    });
    let link = LinkProxy::start(echo_port, LinkModel::new(40, Some(8)))
        .await
        .unwrap();
    let sent: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let started = Instant::now();
    let mut c = TcpStream::connect(("127.0.0.1", link.port()))
        .await
        .unwrap();
    let (mut r, mut w) = c.split();
    let writing = async {
        w.write_all(&sent).await.unwrap();
    };
    let mut back = vec![0u8; sent.len()];
    let reading = async {
        r.read_exact(&mut back).await.unwrap();
    };
    tokio::join!(writing, reading);
    let took = started.elapsed();
    assert!(back == sent, "the echo differs from what was sent");
    // Lower bounds only (a loaded machine makes it slower, never faster): one round trip,
    // and 200 kB at 8 Mbit/s is 0.2 s on the way out.
    assert!(
        took >= Duration::from_millis(40) + Duration::from_millis(200),
        "{took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imap_session_logs_in_lists_and_reads_through_the_link() {
    let d = Dovecot::start(DovecotOptions::default()).await.unwrap();
    testbed::write_maildir(
        &d,
        "alice",
        &testbed::CorpusSpec {
            seed: 5,
            messages: 20,
            max_attachment: 0,
            size_factor: 1.0,
        },
    )
    .unwrap();
    let link = LinkProxy::start(d.imap_port(), LinkModel::new(20, Some(100)))
        .await
        .unwrap();
    let mut through = d.account("alice").unwrap();
    through.port = link.port();
    let (mut a, mut b) = (
        testbed::login(&through).await.unwrap(),
        testbed::login(&d.account("alice").unwrap()).await.unwrap(),
    );
    let (fa, fb) = (
        a.list_folders().await.unwrap(),
        b.list_folders().await.unwrap(),
    );
    assert_eq!(fa.len(), fb.len());
    assert_eq!(
        a.examine("INBOX").await.unwrap(),
        b.examine("INBOX").await.unwrap()
    );
    a.logout().await.unwrap();
    b.logout().await.unwrap();
}
