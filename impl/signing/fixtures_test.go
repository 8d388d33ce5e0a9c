package signing

// deviceKeysJSON is a ~1 KiB device-keys-like object, pretty printed with
// unsorted keys, used by tests and benchmarks.
const deviceKeysJSON = `{
    "user_id": "@alice:example.com",
    "device_id": "JLAFKJWSCS",
    "algorithms": [
        "m.olm.v1.curve25519-aes-sha2",
        "m.megolm.v1.aes-sha2"
    ],
    "keys": {
        "ed25519:JLAFKJWSCS": "lEuiRJBit0IG6nUf5pUzWTUEsRVVe/HJkoKuEww9ULI",
        "curve25519:JLAFKJWSCS": "3C5BFWi2Y8MaVvjM8M22DBmh24PmgR0nPvJOIArzgyI"
    },
    "fallback_keys": {
        "signed_curve25519:AAAAGj": {
            "key": "zKbLg+NrIjpnagy+pIY6uPL4ZwEG2v+8F9lmgsnlZzs",
            "fallback": true,
            "signatures": {
                "@alice:example.com": {
                    "ed25519:JLAFKJWSCS": "FLWxXqGbwrb8SM3Y795eB6OA8bwBcoMZFXBqnTn58AYWZSqiD45tlBVcDa2L7RwdKXebW/VzDlnfVJ+9jok1Bw"
                }
            }
        }
    },
    "signatures": {
        "@alice:example.com": {
            "ed25519:JLAFKJWSCS": "dSO80A01XiigH3uBiDVx/EjzaoycHcjq9lfQX0uWsqxl2giMIiSPR8a4d291W1ihKJL/a+myXS367WT6NAIcBA"
        }
    },
    "unsigned": {
        "device_display_name": "Alice's mobile phone \ud83d\udcf1",
        "age": 1234
    },
    "org.example.extra": {
        "created_ts": 1700000000000,
        "labels": ["primary", "trusted", "日本語", "tab\tseparated"],
        "nested": {"z": null, "y": false, "x": -42}
    }
}`

// signedEventJSON is a PDU-like object with unsigned data.
const signedEventJSON = `{
    "type": "m.room.message",
    "room_id": "!abc123:matrix.org",
    "sender": "@someone:example.org",
    "origin_server_ts": 1404838188000,
    "depth": 12,
    "auth_events": ["$abc:example.org", "$def:example.org"],
    "prev_events": ["$xyz:example.org"],
    "content": {"msgtype": "m.text", "body": "Hello \"world\"\n\u00e9 <b>&</b>"},
    "hashes": {"sha256": "tRnE2MXXGVdbxgWOTvJq1b1z1YTK6KNh5BQhQ8RMfBU"},
    "unsigned": {"age": 4612, "transaction_id": "m1234"}
}`
