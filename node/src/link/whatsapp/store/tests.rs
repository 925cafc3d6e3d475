use super::records::{envelope, hex, open_envelope};

#[test]
fn an_envelope_opens_to_what_was_sealed_in_it() {
    let sealed = envelope("123@s.whatsapp.net", b"payload");
    assert_eq!(
        open_envelope(&sealed).unwrap(),
        ("123@s.whatsapp.net", &b"payload"[..])
    );
    assert!(open_envelope(&sealed[..3]).is_err());
    assert!(open_envelope(&[0, 0, 0, 9, b'x']).is_err());
}

#[test]
fn hex_is_lowercase_and_two_digits_per_byte() {
    assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
}
