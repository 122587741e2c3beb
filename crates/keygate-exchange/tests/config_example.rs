//! The example configuration in docs/ is the default configuration, and it loads.

#[test]
fn the_documented_example_config_is_the_default_and_loads() {
    let text = include_str!("../../../docs/exchange-config.example.toml");
    let parsed = keygate_exchange::ExchangeConfig::from_toml(text).expect("the example loads");
    assert_eq!(parsed, keygate_exchange::ExchangeConfig::default());
}
