//! The protocol table, row by row, against the real server binary over real sockets.
//! Runs against any binary named by `IMSERVER_BIN` (the async variant uses the same tests).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod common;

use common::{connect, start};
use std::time::Duration;

#[test]
fn connect_announces_the_newcomer_to_everyone_including_itself() {
    let server = start(&[]);
    let mut alice = connect(server.addr); // asserts her own notice
    let bob = common::connect_raw(server.addr);
    let b = bob.addr.clone();
    let mut bob = bob;
    bob.expect_line(&format!("[{b}]{b}:已上线\n"));
    alice.expect_line(&format!("[{b}]{b}:已上线\n"));
}

#[test]
fn a_plain_line_is_broadcast_to_everyone_with_the_senders_addr_and_name() {
    let server = start(&[]);
    let mut alice = connect(server.addr);
    let mut bob = connect(server.addr);
    let b = bob.addr.clone();
    alice.read_line(); // bob's online notice
    bob.send("hello 世界 | with bars\n".as_bytes());
    let want = format!("[{b}]{b}:hello 世界 | with bars\n");
    bob.expect_line(&want);
    alice.expect_line(&want);
}

#[test]
fn who_lists_every_online_user_to_the_asker_only() {
    let server = start(&[]);
    let mut alice = connect(server.addr);
    let mut bob = connect(server.addr);
    alice.read_line();
    let (a, b) = (alice.addr.clone(), bob.addr.clone());
    alice.send(b"who\n");
    let mut want = vec![format!("[{a}]{a}:在线...\n"), format!("[{b}]{b}:在线...\n")];
    want.sort();
    assert_eq!(alice.read_lines_sorted(2), want);
    bob.expect_silence(Duration::from_millis(300));
}

#[test]
fn rename_changes_the_name_shown_in_later_messages() {
    let server = start(&[]);
    let mut alice = connect(server.addr);
    let a = alice.addr.clone();
    alice.send("rename|张三\n".as_bytes());
    alice.expect_line("您已更新用户名：张三\n");
    alice.send(b"hi\n");
    alice.expect_line(&format!("[{a}]张三:hi\n"));
    alice.send(b"who\n");
    alice.expect_line(&format!("[{a}]张三:在线...\n"));
}

#[test]
fn rename_to_a_taken_name_is_refused() {
    let server = start(&[]);
    let mut alice = connect(server.addr);
    let mut bob = connect(server.addr);
    alice.read_line();
    alice.send(b"rename|alice\n");
    alice.expect_line("您已更新用户名：alice\n");
    bob.send(b"rename|alice\n");
    bob.expect_line("当前用户名被使用了\n");
    // bob's default address name is taken too, and can never be chosen (it has a ':').
    let a = alice.addr.clone();
    bob.send(format!("rename|{a}\n").as_bytes());
    bob.expect_line("用户名不合法\n");
}

#[test]
fn rename_to_an_invalid_name_is_refused() {
    let server = start(&[]);
    let mut alice = connect(server.addr);
    for bad in [
        "rename|\n",
        "rename| padded\n",
        "rename|a|b\n",
        "rename|a:b\n",
        "rename|tab\there\n",
        "rename|123456789012345678901234567890123\n",
    ] {
        alice.send(bad.as_bytes());
        alice.expect_line("用户名不合法\n");
    }
    alice.send(b"rename|12345678901234567890123456789012\n");
    alice.expect_line("您已更新用户名：12345678901234567890123456789012\n");
}

#[test]
fn a_freed_name_can_be_taken_again() {
    let server = start(&[]);
    let mut alice = connect(server.addr);
    let mut bob = connect(server.addr);
    alice.read_line();
    alice.send(b"rename|alice\n");
    alice.expect_line("您已更新用户名：alice\n");
    alice.send(b"rename|alicia\n");
    alice.expect_line("您已更新用户名：alicia\n");
    bob.send(b"rename|alice\n");
    bob.expect_line("您已更新用户名：alice\n");
}

#[test]
fn private_message_reaches_only_its_recipient() {
    let server = start(&[]);
    let mut alice = connect(server.addr);
    let mut bob = connect(server.addr);
    let mut carol = connect(server.addr);
    alice.read_lines_sorted(2);
    bob.read_line();
    bob.send(b"rename|bob\n");
    bob.expect_line("您已更新用户名：bob\n");
    alice.send(b"rename|alice\n");
    alice.expect_line("您已更新用户名：alice\n");
    alice.send("to|bob|hi bob | 你好\n".as_bytes());
    bob.expect_line("alice对您说hi bob | 你好\n");
    alice.expect_silence(Duration::from_millis(200));
    carol.expect_silence(Duration::from_millis(200));
}

#[test]
fn private_message_by_default_address_name() {
    let server = start(&[]);
    let mut alice = connect(server.addr);
    let mut bob = connect(server.addr);
    alice.read_line();
    let (a, b) = (alice.addr.clone(), bob.addr.clone());
    alice.send(format!("to|{b}|psst\n").as_bytes());
    bob.expect_line(&format!("{a}对您说psst\n"));
}

#[test]
fn private_message_errors_in_the_seeds_order() {
    let server = start(&[]);
    let mut alice = connect(server.addr);
    alice.send(b"rename|alice\n");
    alice.expect_line("您已更新用户名：alice\n");
    alice.send(b"to|\n");
    alice.expect_line("消息格式不正确\n");
    alice.send(b"to||hi\n");
    alice.expect_line("消息格式不正确\n");
    alice.send(b"to|nobody|hi\n");
    alice.expect_line("不存在该用户\n");
    alice.send(b"to|nobody|\n");
    alice.expect_line("不存在该用户\n");
    alice.send(b"to|alice|\n");
    alice.expect_line("无消息内容，请重发\n");
    alice.send(b"to|alice\n");
    alice.expect_line("无消息内容，请重发\n");
    alice.send(b"to|alice|note to self\n");
    alice.expect_line("alice对您说note to self\n");
}

#[test]
fn empty_lines_are_ignored() {
    let server = start(&[]);
    let mut alice = connect(server.addr);
    alice.send(b"\n\r\n\n");
    alice.expect_silence(Duration::from_millis(300));
    alice.send(b"who\n");
    let a = alice.addr.clone();
    alice.expect_line(&format!("[{a}]{a}:在线...\n"));
}

#[test]
fn disconnect_tells_everyone_still_online() {
    let server = start(&[]);
    let mut alice = connect(server.addr);
    let bob = connect(server.addr);
    alice.read_line();
    let b = bob.addr.clone();
    drop(bob);
    alice.expect_line(&format!("[{b}]{b}:已下线\n"));
    alice.send(b"who\n");
    let a = alice.addr.clone();
    alice.expect_line(&format!("[{a}]{a}:在线...\n"));
    alice.expect_silence(Duration::from_millis(200));
}

#[test]
fn the_offline_notice_carries_the_current_name() {
    let server = start(&[]);
    let mut alice = connect(server.addr);
    let mut bob = connect(server.addr);
    alice.read_line();
    bob.send(b"rename|bob\n");
    bob.expect_line("您已更新用户名：bob\n");
    let b = bob.addr.clone();
    drop(bob);
    alice.expect_line(&format!("[{b}]bob:已下线\n"));
    alice.send(b"to|bob|still there?\n");
    alice.expect_line("不存在该用户\n");
}

#[test]
fn several_commands_in_one_packet_run_in_order() {
    let server = start(&[]);
    let mut alice = connect(server.addr);
    let a = alice.addr.clone();
    alice.send(b"rename|alice\nwho\nto|alice|one\ntwo\n");
    alice.expect_line("您已更新用户名：alice\n");
    alice.expect_line(&format!("[{a}]alice:在线...\n"));
    alice.expect_line("alice对您说one\n");
    alice.expect_line(&format!("[{a}]alice:two\n"));
}

#[test]
fn a_command_split_byte_by_byte_is_one_command() {
    let server = start(&[]);
    let mut alice = connect(server.addr);
    let a = alice.addr.clone();
    alice.stream.set_nodelay(true).unwrap();
    for b in "rename|李四\nhello\n".as_bytes() {
        alice.send(&[*b]);
        std::thread::sleep(Duration::from_millis(2));
    }
    alice.expect_line("您已更新用户名：李四\n");
    alice.expect_line(&format!("[{a}]李四:hello\n"));
}

#[test]
fn crlf_lines_are_understood() {
    let server = start(&[]);
    let mut alice = connect(server.addr);
    let a = alice.addr.clone();
    alice.send(b"rename|alice\r\nwho\r\nhi\r\n");
    alice.expect_line("您已更新用户名：alice\n");
    alice.expect_line(&format!("[{a}]alice:在线...\n"));
    alice.expect_line(&format!("[{a}]alice:hi\n"));
}

#[test]
fn chat_text_is_passed_through_as_bytes() {
    let server = start(&[]);
    let mut alice = connect(server.addr);
    let a = alice.addr.clone();
    alice.send(b"\xff\xfe raw\n");
    let mut want = format!("[{a}]{a}:").into_bytes();
    want.extend_from_slice(b"\xff\xfe raw\n");
    let mut got = Vec::new();
    use std::io::Read;
    let mut byte = [0u8];
    while got.len() < want.len() {
        alice.stream.read_exact(&mut byte).unwrap();
        got.push(byte[0]);
    }
    assert_eq!(got, want);
}

#[test]
fn english_texts_with_lang_en() {
    let server = start(&["--lang", "en"]);
    let mut alice = common::connect_raw(server.addr);
    let a = alice.addr.clone();
    alice.expect_line(&format!("[{a}]{a}:online\n"));
    alice.send(b"who\nto|nobody|x\nto|\nrename|a:b\n");
    alice.expect_line(&format!("[{a}]{a}:online...\n"));
    alice.expect_line("no such user\n");
    alice.expect_line("bad message format, use to|name|text\n");
    alice.expect_line("invalid user name\n");
    alice.send(b"rename|alice\nto|alice|hi\n");
    alice.expect_line("your name is now: alice\n");
    alice.expect_line("alice says to you: hi\n");
}
