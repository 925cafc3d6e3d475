use super::*;

fn key(version: u32, byte: u8) -> MasterKey {
    MasterKey::new(version, [byte; 32])
}

fn open_err(sealer: &Sealer, place: (&str, &str, &str), blob: &SealedBlob) -> SealError {
    match sealer.open(place.0, place.1, place.2, blob) {
        Ok(_) => panic!("blob opened at {place:?}"),
        Err(e) => e,
    }
}

#[test]
fn round_trip() {
    let sealer = Sealer::new(key(3, 7));
    let blob = sealer.seal("dev-1", "creds", "noise", b"secret bytes");
    assert_eq!(blob.key_version, 3);
    assert_eq!(
        blob.bytes.len(),
        NONCE_LEN + b"secret bytes".len() + TAG_LEN
    );
    assert!(
        !blob
            .bytes
            .windows(b"secret bytes".len())
            .any(|w| w == b"secret bytes")
    );
    let opened = sealer.open("dev-1", "creds", "noise", &blob).expect("open");
    assert_eq!(opened, b"secret bytes");
}

#[test]
fn empty_plaintext_round_trips() {
    let sealer = Sealer::new(key(1, 1));
    let blob = sealer.seal("d", "n", "k", b"");
    assert_eq!(sealer.open("d", "n", "k", &blob).expect("open"), b"");
}

#[test]
fn every_seal_uses_a_fresh_nonce() {
    let sealer = Sealer::new(key(1, 1));
    let a = sealer.seal("d", "n", "k", b"same");
    let b = sealer.seal("d", "n", "k", b"same");
    assert_ne!(a.bytes[..NONCE_LEN], b.bytes[..NONCE_LEN]);
    assert_ne!(a.bytes, b.bytes);
}

#[test]
fn a_blob_only_opens_at_its_own_place() {
    let sealer = Sealer::new(key(1, 9));
    let blob = sealer.seal("dev-1", "creds", "noise", b"secret");
    for place in [
        ("dev-2", "creds", "noise"),
        ("dev-1", "sessions", "noise"),
        ("dev-1", "creds", "identity"),
        // Moving bytes between the fields must not give the same associated data.
        ("dev-1c", "reds", "noise"),
        ("dev-1", "credsnoise", ""),
    ] {
        assert!(matches!(
            open_err(&sealer, place, &blob),
            SealError::Unauthentic
        ));
    }
}

#[test]
fn another_key_with_the_same_version_fails() {
    let blob = Sealer::new(key(1, 1)).seal("d", "n", "k", b"secret");
    let other = Sealer::new(key(1, 2));
    assert!(matches!(
        open_err(&other, ("d", "n", "k"), &blob),
        SealError::Unauthentic
    ));
}

#[test]
fn any_flipped_bit_fails() {
    let sealer = Sealer::new(key(1, 5));
    let blob = sealer.seal("d", "n", "k", b"secret");
    for index in 0..blob.bytes.len() {
        let mut forged = blob.clone();
        forged.bytes[index] ^= 0x01;
        assert!(
            matches!(
                open_err(&sealer, ("d", "n", "k"), &forged),
                SealError::Unauthentic
            ),
            "flipped byte {index} was accepted"
        );
    }
}

#[test]
fn truncated_blobs_are_errors_not_panics() {
    let sealer = Sealer::new(key(1, 5));
    let blob = sealer.seal("d", "n", "k", b"secret");
    for len in [0, 1, NONCE_LEN, NONCE_LEN + TAG_LEN - 1] {
        let short = SealedBlob {
            key_version: 1,
            bytes: blob.bytes[..len].to_vec(),
        };
        assert!(matches!(
            open_err(&sealer, ("d", "n", "k"), &short),
            SealError::Truncated { len: l } if l == len
        ));
    }
    let tag_only = SealedBlob {
        key_version: 1,
        bytes: blob.bytes[..NONCE_LEN + TAG_LEN].to_vec(),
    };
    assert!(matches!(
        open_err(&sealer, ("d", "n", "k"), &tag_only),
        SealError::Unauthentic
    ));
}

#[test]
fn rotation_opens_old_blobs_and_seals_with_the_new_key() {
    let old = Sealer::new(key(1, 1));
    let old_blob = old.seal("d", "n", "k", b"old secret");

    let rotated = Sealer::with_previous(key(2, 2), vec![key(1, 1)]);
    assert_eq!(rotated.current_version(), 2);
    assert_eq!(
        rotated.open("d", "n", "k", &old_blob).expect("open old"),
        b"old secret"
    );
    let new_blob = rotated.seal("d", "n", "k", b"new secret");
    assert_eq!(new_blob.key_version, 2);
    assert_eq!(
        rotated.open("d", "n", "k", &new_blob).expect("open new"),
        b"new secret"
    );
    // The old sealer does not know version 2.
    assert!(matches!(
        open_err(&old, ("d", "n", "k"), &new_blob),
        SealError::UnknownKeyVersion(2)
    ));
}

#[test]
fn duplicate_versions_keep_the_current_key() {
    let sealer = Sealer::with_previous(key(1, 1), vec![key(1, 2)]);
    let blob = sealer.seal("d", "n", "k", b"x");
    assert_eq!(sealer.open("d", "n", "k", &blob).expect("open"), b"x");
    assert_eq!(
        format!("{sealer:?}"),
        "Sealer { current_version: 1, versions: [1] }"
    );
}

#[test]
fn unknown_version_is_an_error() {
    let sealer = Sealer::new(key(1, 1));
    let mut blob = sealer.seal("d", "n", "k", b"secret");
    blob.key_version = 42;
    assert!(matches!(
        open_err(&sealer, ("d", "n", "k"), &blob),
        SealError::UnknownKeyVersion(42)
    ));
}

#[test]
fn debug_never_shows_key_bytes() {
    let key = MasterKey::new(4, [0xAB; 32]);
    let shown = format!("{key:?} {:?}", Sealer::new(key.clone()));
    assert!(shown.contains("version: 4"), "{shown}");
    assert!(!shown.contains("171"), "{shown}"); // 0xAB
    assert!(!shown.contains(&key.to_base64()), "{shown}");
}

#[test]
fn base64_keys_must_be_32_bytes() {
    let good = BASE64.encode([7u8; 32]);
    let key = MasterKey::from_base64(2, &format!("  {good}\n")).expect("good key");
    assert_eq!(key.version(), 2);
    assert_eq!(key.to_base64(), good);

    let short = BASE64.encode([7u8; 16]);
    let err = MasterKey::from_base64(1, &short).expect_err("16 bytes");
    assert!(
        matches!(&err, SealError::BadKey(reason) if reason.contains("16 bytes")),
        "{err}"
    );
    let err = MasterKey::from_base64(1, "not base64!").expect_err("not base64");
    assert!(matches!(err, SealError::BadKey(_)), "{err}");
    assert!(matches!(
        MasterKey::from_base64(1, ""),
        Err(SealError::BadKey(_))
    ));
}

#[test]
fn generated_keys_differ() {
    let a = MasterKey::generate(1).expect("generate");
    let b = MasterKey::generate(1).expect("generate");
    assert_ne!(a.to_base64(), b.to_base64());
}

#[test]
fn load_or_create_generates_once_then_reads_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("nested").join("data");
    let first = load_or_create_master_key(&data_dir, None)
        .expect("create")
        .current;
    assert_eq!(first.version(), 1);
    let second = load_or_create_master_key(&data_dir, None)
        .expect("read back")
        .current;
    assert_eq!(first.to_base64(), second.to_base64());
    let text = std::fs::read_to_string(data_dir.join(KEY_FILE)).expect("read file");
    assert_eq!(text, format!("{}\n", first.to_base64()));
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(&data_dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from(KEY_FILE)]);
}

#[test]
fn a_given_key_file_is_read_and_never_created() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("secrets").join("master.key");
    let err = load_master_key_file(&path).expect_err("missing");
    assert!(
        matches!(&err, SealError::Io { path: p, source } if *p == path
            && source.kind() == std::io::ErrorKind::NotFound),
        "{err:?}"
    );
    assert!(err.to_string().contains("master.key"), "{err}");
    assert!(!path.exists() && !path.parent().expect("dir").exists());

    let key = MasterKey::generate(1).expect("generate");
    std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
    std::fs::write(&path, format!("{}\n", key.to_base64())).expect("write");
    let read = load_master_key_file(&path).expect("read").current;
    assert_eq!((read.version(), read.to_base64()), (1, key.to_base64()));

    std::fs::write(&path, "not a key").expect("write");
    let err = load_master_key_file(&path).expect_err("corrupt");
    assert!(matches!(err, SealError::CorruptKeyFile { .. }), "{err:?}");

    let from_env = master_key_from_env(&key.to_base64()).expect("env");
    assert_eq!(from_env.to_base64(), key.to_base64());
    let err = master_key_from_env("").expect_err("empty");
    assert!(err.to_string().contains("WAFLEET_MASTER_KEY"), "{err}");
}

#[test]
fn processes_starting_at_once_agree_on_one_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let barrier = std::sync::Barrier::new(8);
    let keys: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    load_or_create_master_key(&data_dir, None)
                        .expect("load or create")
                        .current
                        .to_base64()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let on_disk = load_or_create_master_key(&data_dir, None)
        .expect("read back")
        .current;
    assert!(keys.iter().all(|k| *k == on_disk.to_base64()), "{keys:?}");
}

#[cfg(unix)]
#[test]
fn key_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    load_or_create_master_key(&data_dir, None).expect("create");
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&data_dir.join(KEY_FILE)), 0o600);
    assert_eq!(mode(&data_dir), 0o700);
}

#[test]
fn env_overrides_the_file_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env_key = BASE64.encode([3u8; 32]);
    let key = load_or_create_master_key(dir.path(), Some(&env_key))
        .expect("env key")
        .current;
    assert_eq!(key.to_base64(), env_key);
    assert_eq!(key.version(), 1);
    assert!(!dir.path().join(KEY_FILE).exists());

    let from_file = load_or_create_master_key(dir.path(), None)
        .expect("create")
        .current;
    assert_ne!(from_file.to_base64(), env_key);
    let key = load_or_create_master_key(dir.path(), Some(&env_key))
        .expect("env key")
        .current;
    assert_eq!(key.to_base64(), env_key);
}

#[test]
fn bad_env_values_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    for value in [
        "%%%",
        "",
        &BASE64.encode([1u8; 31]),
        &BASE64.encode([1u8; 33]),
    ] {
        let err = load_or_create_master_key(dir.path(), Some(value)).expect_err(value);
        assert!(
            matches!(&err, SealError::BadKey(reason) if reason.contains("WAFLEET_MASTER_KEY")),
            "{err}"
        );
    }
    assert!(!dir.path().join(KEY_FILE).exists());
}

#[test]
fn corrupt_key_file_is_an_error_and_is_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(KEY_FILE);
    for contents in [
        b"not a key\n".to_vec(),
        format!("{}\n", BASE64.encode([1u8; 16])).into_bytes(),
        vec![0xff, 0xfe, 0x00],
        Vec::new(),
    ] {
        std::fs::write(&path, &contents).expect("write");
        let err = load_or_create_master_key(dir.path(), None).expect_err("corrupt");
        assert!(matches!(err, SealError::CorruptKeyFile { .. }), "{err}");
        assert_eq!(std::fs::read(&path).expect("read"), contents);
    }
}

#[test]
fn unreadable_data_dir_is_an_io_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A file where the data folder should be.
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, b"x").expect("write");
    let err = load_or_create_master_key(&not_a_dir, None).expect_err("not a dir");
    assert!(matches!(err, SealError::Io { .. }), "{err}");
}

#[test]
fn a_rotated_key_file_is_read_by_a_running_sealer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = load_or_create_master_key(dir.path(), None).expect("create");
    let path = key_file_path(dir.path());
    let source: KeySource = {
        let path = path.clone();
        Arc::new(move || load_master_key_file(&path))
    };
    let running = Sealer::reloading(keys.clone(), source);
    let old_blob = running.seal("d", "n", "k", b"old");
    assert_eq!(old_blob.key_version, 1);

    // Another process rotates the file and seals with the new key.
    let rotated = keys.rotated().expect("rotate");
    replace_key_file(&path, &rotated).expect("replace");
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.starts_with("2:"), "the new key comes first");
    let other = Sealer::from_keys(load_master_key_file(&path).expect("read"));
    let new_blob = other.seal("d", "n", "k", b"new");
    assert_eq!(new_blob.key_version, 2);

    // The running sealer meets version 2, reads the file again, opens it, and seals
    // with version 2 from then on; what version 1 sealed still opens.
    assert_eq!(
        running.open("d", "n", "k", &new_blob).expect("open"),
        b"new"
    );
    assert_eq!(running.current_version(), 2);
    assert_eq!(
        running.open("d", "n", "k", &old_blob).expect("open"),
        b"old"
    );
    assert_eq!(running.seal("d", "n", "k", b"x").key_version, 2);

    // A version nobody has stays an error (and the file is not read again at once).
    let mut unknown = new_blob.clone();
    unknown.key_version = 9;
    assert!(matches!(
        running.open("d", "n", "k", &unknown),
        Err(SealError::UnknownKeyVersion(9))
    ));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

#[test]
fn versioned_keys_come_from_the_environment() {
    let current = format!("2:{}", BASE64.encode([2u8; 32]));
    let key = master_key_from_env(&current).expect("versioned");
    assert_eq!(key.version(), 2);
    let keys = master_keys_from_env(&current, Some(&BASE64.encode([1u8; 32]))).expect("both");
    let old = Sealer::new(MasterKey::new(1, [1; 32])).seal("d", "n", "k", b"old");
    let sealer = Sealer::from_keys(keys);
    assert_eq!(sealer.current_version(), 2);
    assert_eq!(sealer.open("d", "n", "k", &old).expect("open"), b"old");
    let err = master_keys_from_env(&current, Some("2:short")).expect_err("bad previous");
    assert!(
        err.to_string().contains("WAFLEET_MASTER_KEY_PREVIOUS"),
        "{err}"
    );
}
