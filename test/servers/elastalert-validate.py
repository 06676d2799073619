"""Loads ElastAlert 2 rule files the way ElastAlert does, and says which it refuses.

Each file goes through ElastAlert's own FileRulesLoader.load_configuration: its schema.yaml,
then the rule type's and the alerters' own checks (required options, option values). One
step is skipped: a new_term rule, when it starts, asks Elasticsearch for the terms already
in the index; that is run-time state, not validation, and there is no Elasticsearch here.

Prints "ok FILE" or "invalid FILE: REASON" per file; exits 1 if any is invalid.
"""
import sys

from elastalert.loaders import FileRulesLoader
from elastalert.ruletypes import NewTermsRule

NewTermsRule.get_all_terms = lambda self, args: None

CONF = {
    'rules_folder': '.',
    'scan_subdirectories': False,
    'es_host': 'localhost',
    'es_port': 9200,
    'writeback_index': 'elastalert_status',
    'max_query_size': 10000,
    'alert_time_limit': {'hours': 24},
    'old_query_limit': {'weeks': 1},
    'run_every': {'minutes': 5},
    'buffer_time': {'minutes': 45},
    'scroll_keepalive': '30s',
    'disable_rules_on_error': False,
}

invalid = 0
for path in sys.argv[1:]:
    try:
        FileRulesLoader(dict(CONF)).load_configuration(path, dict(CONF))
        print(f'ok {path}')
    except Exception as err:  # ElastAlert raises EAException and others alike
        invalid += 1
        reason = ' '.join(str(err).split())[:500]
        print(f'invalid {path}: {reason}')
sys.exit(1 if invalid else 0)
