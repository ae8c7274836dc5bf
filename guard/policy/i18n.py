"""Policy errors and warnings in the admin's language (Japanese), English as the fallback.

The messages are built in English where the problem is found (explain.py, checks.py,
values.py, loader.py, yamltree.py, the CSV readers); this module translates a finished
message, so the code that finds a problem stays one language and a message without a
catalog entry still reaches the admin, in English. file:line:column and the place in
the policy (`rules[3].action`) are never translated: they are what the admin looks up.

Each catalog entry is an English template and its Japanese text. A placeholder is
  {name}      copied as it is (a key, a value, a file name);
  {msg_name}  itself a message, translated again (a message with a suffix);
  {ph_name}   a phrase of PHRASES (the entry does not apply when it is not one);
  {v_name}    a value shown to the admin, translated when it is one of PHRASES;
  {t_name}    a message translated when an entry fits, else kept (PyYAML's details).
An entry's `origin` is the package whose code writes its English text: guard's policy
code, guard.knowledge for the suppression lists a policy names (what `guard policy test`
says of them) and an old system's delivery history (`guard history import`, `guard policy
test --history`), guard.inspect for own contact data, guard.cli for what those commands
add around it, email_validator for why an address is not valid, or PyYAML for
the details of a YAML syntax error.
tests/test_policy_i18n.py checks that every entry is still produced by that code (no dead
entries).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from guard.policy.issues import PolicyIssue

LANGUAGES = ("en", "ja")

# Parts of messages that are composed in several places (explain._SIMPLE, explain._show).
PHRASES: dict[str, str] = {
    "expected text": "文字列を指定してください",
    "expected a whole number": "整数を指定してください",
    "expected a number": "数値を指定してください",
    "expected true or false": "true または false を指定してください",
    "expected a list": "リストを指定してください",
    "expected a mapping (key: value)": "マッピング（キー: 値）を指定してください",
    "expected non-empty text": "空でない文字列を指定してください",
    "nothing (null)": "空（null）",
    "a mapping": "マッピング",
    "a list": "リスト",
}


@dataclass(frozen=True)
class Entry:
    en: str
    ja: str
    origin: str = "guard.policy"  # or guard.knowledge, .inspect, .cli, "yaml", ...

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        out = ""
        for literal, name in _split(self.en):
            out += re.escape(literal)
            if name:
                out += f"(?P<{name}>.+?)"
        return re.compile(out, re.DOTALL)

    def literals(self) -> list[str]:
        """The fixed parts of the English template (what the code must still produce)."""
        return [lit for lit, _ in _split(self.en) if lit]


_FIELD = re.compile(r"\{(\w+)\}")


def _split(template: str) -> list[tuple[str, str]]:
    """'a {x} b' -> [('a ', 'x'), (' b', '')]; '{{' and '}}' are literal braces."""
    parts: list[tuple[str, str]] = []
    pos = 0
    text = template.replace("{{", "\0").replace("}}", "\1")
    for m in _FIELD.finditer(text):
        parts.append((text[pos:m.start()], m.group(1)))
        pos = m.end()
    parts.append((text[pos:], ""))
    return [(lit.replace("\0", "{").replace("\1", "}"), name) for lit, name in parts]


# More specific templates first: the first entry that matches the whole message wins.
CATALOG: tuple[Entry, ...] = (
    # a suffix the loader adds to a message (checks.Issue.other)
    Entry("{msg} (first defined at {where})", "{msg}（最初の定義: {where}）"),
    # -- keys and values (explain.py)
    Entry("missing required key {key}", "必須のキー {key} がありません"),
    Entry("unknown key {key} (did you mean {close}?); expected one of {allowed}",
          "不明なキー {key} です（{close} の誤りではありませんか？）。"
          "ここで使えるキー: {allowed}"),
    Entry("unknown key {key} (did you mean {close}?); a group holds only its {only} "
          "(put {key2} in a condition inside it)",
          "不明なキー {key} です（{close} の誤りではありませんか？）。グループに書けるのは "
          "{only} だけです（{key2} はその中の条件に書いてください）"),
    Entry("unknown key {key}; a group holds only its {only} (put {key2} in a condition "
          "inside it)",
          "不明なキー {key} です。グループに書けるのは {only} だけです（{key2} はその中の"
          "条件に書いてください）"),
    Entry("unknown key {key}; expected one of {allowed}",
          "不明なキー {key} です。ここで使えるキー: {allowed}"),
    Entry("unknown key {key}", "不明なキー {key} です"),
    Entry("expected one of {choices}; got {v_got}",
          "次のいずれかを指定してください: {choices}（指定された値: {v_got}）"),
    Entry("expected a number >= {bound}; got {v_got}",
          "{bound} 以上の数値を指定してください（指定された値: {v_got}）"),
    Entry("expected a number > {bound}; got {v_got}",
          "{bound} より大きい数値を指定してください（指定された値: {v_got}）"),
    Entry("expected a number <= {bound}; got {v_got}",
          "{bound} 以下の数値を指定してください（指定された値: {v_got}）"),
    Entry("expected a number < {bound}; got {v_got}",
          "{bound} 未満の数値を指定してください（指定された値: {v_got}）"),
    Entry("expected at most {n} characters; got {v_got}",
          "{n} 文字以内で指定してください（指定された値: {v_got}）"),
    Entry("expected at least {n} items; got {v_got}",
          "{n} 個以上の項目を指定してください（指定された値: {v_got}）"),
    Entry("expected at least {n} item; got {v_got}",
          "1 個以上の項目を指定してください（指定された値: {v_got}）"),
    # -- values (values.py, schema.py)
    Entry("unknown recipient class {got} (did you mean 'partner:{kind}' or 'list:{name}'?); "
          "expected customer, partner, partner:KIND (a kind in partners.csv, like "
          "partner:contractor) or list:NAME (a suppression list)",
          "不明な宛先の種類 {got} です（'partner:{kind}' か 'list:{name}' の誤りでは"
          "ありませんか？）。customer、partner、partner:KIND（partners.csv の kind。"
          "例 partner:contractor）、list:NAME（配信停止リスト）のいずれかを指定してください"),
    Entry("unknown recipient class {got} (did you mean {close}?); expected customer, "
          "partner, partner:KIND (a kind in partners.csv, like partner:contractor) or "
          "list:NAME (a suppression list)",
          "不明な宛先の種類 {got} です（{close} の誤りではありませんか？）。customer、partner、"
          "partner:KIND（partners.csv の kind。例 partner:contractor）、list:NAME（配信停止"
          "リスト）のいずれかを指定してください"),
    Entry("unknown recipient class {got}; expected customer, partner, partner:KIND (a kind "
          "in partners.csv, like partner:contractor) or list:NAME (a suppression list)",
          "不明な宛先の種類 {got} です。customer、partner、partner:KIND（partners.csv の kind。"
          "例 partner:contractor）、list:NAME（配信停止リスト）のいずれかを指定してください"),
    Entry("expected a place like body, subject, attachment, attachment:名簿.xlsx or "
          "new_text; got {got}",
          "body、subject、attachment、attachment:名簿.xlsx、new_text のような場所を指定して"
          "ください（指定された値: {got}）"),
    Entry("expected one condition; for several write {{not: {{any: [...]}}}} (none of them "
          "holds) or {{not: {{all: [...]}}}} (not all of them hold)",
          "not には条件を 1 つだけ書きます。複数なら {{not: {{any: [...]}}}}（どれも成り立たない）"
          "か {{not: {{all: [...]}}}}（すべては成り立たない）と書いてください"),
    Entry("expected a domain name like example.co.jp or *.example.co.jp; got {got}",
          "example.co.jp や *.example.co.jp のようなドメイン名を指定してください"
          "（指定された値: {got}）"),
    Entry("expected a domain name like example.co.jp; got {got}",
          "example.co.jp のようなドメイン名を指定してください（指定された値: {got}）"),
    Entry("expected an address or pattern like tanaka@example.co.jp or *@example.co.jp; "
          "got {got}",
          "tanaka@example.co.jp や *@example.co.jp のようなアドレスまたはパターンを"
          "指定してください（指定された値: {got}）"),
    Entry("expected a mail address like tanaka@example.co.jp (no wildcards); got {got}",
          "tanaka@example.co.jp のようなメールアドレスを指定してください"
          "（ワイルドカードは使えません。指定された値: {got}）"),
    Entry("expected a name of ASCII letters, digits, '_', '-' or '.'; got {got}",
          "名前には半角英数字と '_'、'-'、'.' だけを使ってください（指定された値: {got}）"),
    Entry("expected a group name without spaces; got {got}",
          "グループ名に空白は使えません（指定された値: {got}）"),
    Entry("expected a finding symbol like pii.my_number or a family like pii; got {got}",
          "pii.my_number のようなシンボル、または pii のようなファミリーを指定してください"
          "（指定された値: {got}）"),
    Entry("expected text on one line without control characters; got {got}",
          "制御文字を含まない 1 行の文字列を指定してください（指定された値: {got}）"),
    Entry("expected a valid regular expression; got {got} ({error})",
          "正規表現として正しくありません: {got}（{error}）"),
    Entry("expected a regular expression RE2 supports (no backreferences or look-around); "
          "got {got} ({error})",
          "RE2 で使えない正規表現です（後方参照と先読み・後読みは使えません）: {got}（{error}）"),
    Entry("expected an enhanced status code like 5.7.1; got {got}",
          "5.7.1 のような拡張ステータスコードを指定してください（指定された値: {got}）"),
    Entry("expected header names starting with X-; got {got}",
          "X- で始まるヘッダー名を指定してください（指定された値: {got}）"),
    # -- the document as a whole (checks.py)
    Entry("unknown group {name}; expected one of (no groups are defined) or sender",
          "不明なグループ {name} です（グループが 1 つも定義されていません）。"
          "sender を指定するか、groups: にグループを定義してください"),
    Entry("unknown group {name}; expected one of (no groups are defined)",
          "不明なグループ {name} です（グループが 1 つも定義されていません）"),
    Entry("unknown group {name}; expected one of {known} or sender",
          "不明なグループ {name} です。次のいずれかを指定してください: {known}、sender"),
    Entry("unknown group {name}; expected one of {known}",
          "不明なグループ {name} です。次のいずれかを指定してください: {known}"),
    Entry("expected an address in ASCII (alert mail cannot be sent to a non-ASCII "
          "address); got {got}",
          "半角英数字（ASCII）のアドレスを指定してください（ASCII 以外のアドレスには通知メールを"
          "送れません。指定された値: {got}）"),
    Entry("alerts has no officers: severe events of senders outside the listed groups "
          "alert nobody",
          "alerts に officers がありません。どのグループにも属さない送信者の重大な事象は"
          "誰にも通知されません"),
    Entry("expected at least {need} approvers for approvals_required {n}; got {have}",
          "approvals_required {n} には承認者が {need} 人以上必要です（現在 {have} 人）"),
    Entry("escalate_after needs backup_approvers to escalate to",
          "escalate_after を使うには、エスカレーション先の backup_approvers が必要です"),
    Entry("conditions nested {depth} groups deep; at most {most} (all, any, not inside one "
          "another): write them flatter",
          "条件のグループが {depth} 段の入れ子になっています。最大 {most} 段です（all、any、not "
          "の入れ子）。もっと平らに書いてください"),
    Entry("{symbol} findings carry no line count, so min_percent never holds; it applies "
          "to {symbols}",
          "{symbol} の検出結果は行数を持たないため、min_percent は成り立ちません。使えるのは "
          "{symbols} です"),
    Entry("{cls} needs lists.partners (the partners.csv file, with a kind column)",
          "{cls} には lists.partners（kind 列のある partners.csv）が必要です"),
    Entry("{cls} needs lists.{cls2}s (the {cls3}s.csv file)",
          "{cls} には lists.{cls2}s（{cls3}s.csv）が必要です"),
    Entry("no partner in partners.csv has the kind {kind} (kinds there: none: add a kind "
          "column); this never holds until one does",
          "partners.csv に kind {kind} の取引先はありません（kind 列がありません）。"
          "そのような行ができるまで、この条件は成り立ちません"),
    Entry("no partner in partners.csv has the kind {kind} (kinds there: {kinds}); this "
          "never holds until one does",
          "partners.csv に kind {kind} の取引先はありません（ある kind: {kinds}）。"
          "そのような行ができるまで、この条件は成り立ちません"),
    Entry("duplicate rule name {name}", "ルール名 {name} が重複しています"),
    Entry("duplicate keyword name {name}", "キーワード名 {name} が重複しています"),
    Entry("tag has no effect on a rejected message (nothing is delivered)",
          "拒否されるメールには何も配信されないため、tag は効果がありません"),
    Entry("{param} applies to action {allowed}, not to {action}",
          "{param} はアクション {allowed} で使うキーです（{action} には使えません）"),
    Entry("expected ASCII text: the English text goes into the SMTP reply",
          "英語の文は SMTP 応答に入るため、ASCII 文字だけで書いてください"),
    Entry("no detector reports the family {family} (known: {known}); "
          "this condition never matches",
          "ファミリー {family} を報告する検出器はありません（既知のファミリー: {known}）。"
          "この条件は一致しません"),
    Entry("no detector reports the family {family} (known: {known}); under not, this "
          "condition holds for every message",
          "ファミリー {family} を報告する検出器はありません（既知のファミリー: {known}）。"
          "not の中では、この条件はすべてのメールで成り立ちます"),
    Entry("unknown place {place}: no finding is there, so this never holds; did you mean "
          "{guess}? (places: {places}, attachment:NAME, header:NAME)",
          "不明な場所 {place} です。そこに検出結果はないため、この条件は成り立ちません。"
          "{guess} の誤りではありませんか？（場所: {places}、attachment:ファイル名、"
          "header:ヘッダー名）"),
    Entry("unknown place {place}: no finding is there, so this never holds (places: "
          "{places}, attachment:NAME, header:NAME)",
          "不明な場所 {place} です。そこに検出結果はないため、この条件は成り立ちません"
          "（場所: {places}、attachment:ファイル名、header:ヘッダー名）"),
    Entry("this rule has no scope and no conditions: it will {action} every message",
          "このルールには scope も conditions もありません。すべてのメールに {action} が"
          "適用されます"),
    Entry("unknown evidence {key} for {family} (known: none: {family2} has no evidence to "
          "test)",
          "{family} に証拠キー {key} はありません（{family2} には条件に使える証拠がありません）"),
    Entry("unknown evidence {key} for {family} (known: {known})",
          "{family} に証拠キー {key} はありません（使えるキー: {known}）"),
    Entry("no keyword named {name}; expected one of (no keywords are defined)",
          "キーワード {name} は定義されていません（キーワードが 1 つも定義されていません）"),
    Entry("no keyword named {name}; expected one of {names}",
          "キーワード {name} は定義されていません。次のいずれかを指定してください: {names}"),
    Entry("no list {name} in lists.suppression; fine if it is imported with "
          "`guard lists import` (declare it `{decl}: {{source: store}}` to say so)",
          "lists.suppression にリスト {name} がありません。`guard lists import` で取り込む"
          "リストであれば問題ありません（その場合は `{decl}: {{source: store}}` と宣言して"
          "ください）"),
    Entry("approval by the sender's group needs defaults.approver_group for senders "
          "outside every group",
          "送信者のグループによる承認には、どのグループにも属さない送信者のために "
          "defaults.approver_group が必要です"),
    Entry("uninspectable: approve needs defaults.approver_group for senders outside every "
          "group",
          "uninspectable: approve には、どのグループにも属さない送信者のために "
          "defaults.approver_group が必要です"),
    Entry("group {name} has no approvers", "グループ {name} に承認者（approvers）がいません"),
    # -- files and includes (loader.py, yamltree.py)
    Entry("policy file not found", "ポリシーファイルが見つかりません"),
    Entry("file not found: {path}", "ファイルが見つかりません: {path}"),
    Entry("include cycle: {cycle}", "include が循環しています: {cycle}"),
    Entry("{path} is included twice", "{path} が 2 回 include されています"),
    Entry("expected a file name or a list of file names",
          "ファイル名、またはファイル名のリストを指定してください"),
    Entry("already set at {where}", "すでに {where} で設定されています"),
    Entry("cannot read: {reason}", "読み込めません: {reason}"),
    Entry("expected UTF-8 text (save the file as UTF-8)",
          "UTF-8 のテキストではありません（ファイルを UTF-8 で保存してください）"),
    Entry("expected a mapping of sections (defaults:, groups:, rules: ...)",
          "セクションのマッピング（defaults:、groups:、rules: など）を書いてください"),
    Entry("YAML syntax error: {t_problem}", "YAML の構文エラー: {t_problem}"),
    Entry("YAML error: {problem}", "YAML のエラー: {problem}"),
    Entry("document too large (too many nodes or alias expansions)",
          "文書が大きすぎます（ノードまたはエイリアスの展開が多すぎます）"),
    Entry("recursive YAML alias", "YAML のエイリアスが自分自身を参照しています"),
    Entry("unsupported YAML tag {tag}", "使えない YAML タグです: {tag}"),
    Entry("unsupported YAML node", "使えない YAML ノードです"),
    Entry("expected a plain text key", "キーには単純な文字列を使ってください"),
    Entry("expected a text key; got {key} (quote it)",
          "キーは文字列にしてください（指定された値: {key}。引用符で囲んでください）"),
    Entry("duplicate key {key} (first at line {line})",
          "キー {key} が重複しています（最初の定義: {line} 行目）"),
    # -- what PyYAML says of a syntax error (yamltree.py adds "(<context>)")
    Entry("{msg_problem} ({t_context})", "{t_context}、{msg_problem}"),
    Entry("found character {char} that cannot start any token",
          "ここに {char} は書けません（字下げにタブを使っていないか確かめてください。"
          "YAML の字下げは空白だけです）", "yaml"),
    Entry("expected <block end>, but found {found}",
          "字下げがそろっていません（{found} がありました）", "yaml"),
    Entry("expected the node content, but found {found}",
          "値があるはずの場所に {found} がありました（閉じていない括弧や引用符がないか"
          "確かめてください）", "yaml"),
    Entry("mapping values are not allowed here",
          "ここに「キー: 値」は書けません（値にコロンと空白を含めるなら引用符で囲んで"
          "ください）", "yaml"),
    Entry("sequence entries are not allowed here",
          "ここにリストの項目（- ）は書けません（字下げを確かめてください）", "yaml"),
    Entry("could not find expected ':'", "':' が見つかりません", "yaml"),
    Entry("found undefined alias {name}", "定義されていないエイリアス {name} です", "yaml"),
    Entry("found unknown escape character {char}",
          "不明なエスケープ文字 {char} です（\\ を含む正規表現は '...' の単一引用符で"
          "囲んでください）", "yaml"),
    Entry("found unexpected end of stream",
          "ファイルが途中で終わっています（閉じていない引用符がないか確かめてください）",
          "yaml"),
    Entry("expected ',' or ']', but got {found}",
          "',' か ']' があるはずの場所に {found} がありました", "yaml"),
    Entry("expected ',' or '}}', but got {found}",
          "',' か '}}' があるはずの場所に {found} がありました", "yaml"),
    Entry("could not determine a constructor for the tag {tag}",
          "使えない YAML タグです: {tag}", "yaml"),
    Entry("while scanning for the next token", "次の字句を読んでいるとき", "yaml"),
    Entry("while scanning a simple key", "キーを読んでいるとき", "yaml"),
    Entry("while scanning a quoted scalar", "引用符で囲んだ値を読んでいるとき", "yaml"),
    Entry("while scanning a double-quoted scalar", "二重引用符で囲んだ値を読んでいるとき",
          "yaml"),
    Entry("while parsing a block mapping", "マッピングを読んでいるとき", "yaml"),
    Entry("while parsing a block collection", "リストを読んでいるとき", "yaml"),
    Entry("while parsing a flow node", "値を読んでいるとき", "yaml"),
    Entry("while parsing a flow sequence", "[ ] のリストを読んでいるとき", "yaml"),
    Entry("while parsing a flow mapping", "{{ }} のマッピングを読んでいるとき", "yaml"),
    # -- CSV data files (csvread.py, datafiles.py)
    Entry("the file is not UTF-8, Shift_JIS (cp932) or EUC-JP text",
          "ファイルが UTF-8、Shift_JIS（cp932）、EUC-JP のいずれのテキストでもありません"),
    Entry("the file is larger than {n} MB", "ファイルが {n} MB を超えています"),
    Entry("the file contains NUL bytes: not a text CSV file",
          "ファイルに NUL バイトが含まれています（テキストの CSV ファイルではありません）"),
    Entry("unreadable CSV: {error}", "CSV として読めません: {error}"),
    Entry("the file holds no addresses", "ファイルにアドレスがありません"),
    Entry("the file holds no domains", "ファイルにドメインがありません"),
    Entry("the file holds no customers", "ファイルに顧客がありません"),
    Entry("the file holds no rows", "ファイルに行がありません"),
    Entry("expected a header row naming the columns: name, postal_code, address, phone, "
          "fax, domain (or 支店名, 郵便番号, 住所, 電話, FAX, ドメイン)",
          "列の名前を書いた見出し行が必要です: name、postal_code、address、phone、fax、"
          "domain（または 支店名、郵便番号、住所、電話、FAX、ドメイン）"),
    Entry("expected a phone or fax number like 03-1234-5678 or +81 3-1234-5678; got {got}",
          "03-1234-5678 や +81 3-1234-5678 のような電話・FAX 番号を指定してください"
          "（指定された値: {got}）", "guard.inspect"),
    Entry("expected a postal code of 7 digits like 100-0005; got {got}",
          "100-0005 のような 7 桁の郵便番号を指定してください（指定された値: {got}）",
          "guard.inspect"),
    Entry("expected a postal address with its block number like 東京都千代田区丸の内1-2-3; "
          "got {got}",
          "東京都千代田区丸の内1-2-3 のように番地まで書いた住所を指定してください"
          "（指定された値: {got}）", "guard.inspect"),
    Entry("no column of e-mail addresses found", "メールアドレスの列が見つかりません"),
    Entry("no column of domains found", "ドメインの列が見つかりません"),
    Entry("the header has no name column", "見出し行に名前の列がありません"),
    Entry("empty address", "アドレスが空です"),
    Entry("invalid address: {t_error}", "アドレスが正しくありません: {t_error}"),
    Entry("empty customer name", "顧客名が空です"),
    Entry("customer {name} is already on line {line}",
          "顧客 {name} はすでに {line} 行目にあります"),
    Entry("empty domain", "ドメインが空です"),
    Entry("{got} is an address, not a domain",
          "{got} はアドレスです。ドメインを指定してください"),
    Entry("{got} has no dot: not a mail domain",
          "{got} にはドットがないため、メールのドメインではありません"),
    Entry("{got} is not a valid domain", "{got} はドメインとして正しくありません"),
    # -- suppression lists as `guard policy test` reads them (knowledge/listsync.py)
    Entry("list {name}: {path} has bad rows ({t_rows}): the guard has no entries for it",
          "リスト {name}: {path} に誤った行があります（{t_rows}）。このリストに使える"
          "エントリーはありません", "guard.knowledge"),
    Entry("list {name}: {path} has bad rows ({t_rows}): the guard keeps the {n} entries "
          "of the last good sync",
          "リスト {name}: {path} に誤った行があります（{t_rows}）。前回正しく同期した "
          "{n} 件のエントリーを使い続けます", "guard.knowledge"),
    Entry("line {line}: {t_reason}", "{line} 行目: {t_reason}", "guard.knowledge"),
    Entry("list {name} is managed in the store, which this test does not read "
          "(--no-history)",
          "リスト {name} はストアで管理されていますが、このテストはストアを読みません"
          "（--no-history）", "guard.knowledge"),
    Entry("list {name} is managed in the store but has not been imported: "
          "`guard lists import {name2} FILE`",
          "リスト {name} はストアで管理するリストですが、まだ取り込まれていません: "
          "`guard lists import {name2} FILE`", "guard.knowledge"),
    Entry("list {name}: the policy names the file {path}, but the store manages this list "
          "(imported with `guard lists import`, {n} entries): declare it "
          "`{name2}: {{source: store}}`, or run `guard lists remove {name3}` to let the file "
          "take over",
          "リスト {name}: ポリシーはファイル {path} を指定していますが、このリストはストアで"
          "管理されています（`guard lists import` で取り込み済み、{n} 件）。"
          "`{name2}: {{source: store}}` と宣言するか、`guard lists remove {name3}` を実行して"
          "ファイルに管理を移してください", "guard.knowledge"),
    Entry("list {name} (managed in the store) was hashed with key {old} (digest scheme "
          "{old_scheme}), this guard's key is {new} (scheme {new_scheme}, secret: {where}): "
          "run with the secret it was imported with, or, if the secret was changed on "
          "purpose, import it again with this guard's settings "
          "(`guard lists import {name2} FILE --new-key`)",
          "リスト {name}（ストアで管理）は鍵 {old}（ダイジェスト方式 {old_scheme}）で"
          "ハッシュされていますが、この guard の鍵は {new}（方式 {new_scheme}、シークレット: "
          "{where}）です。取り込んだときのシークレットで実行するか、意図してシークレットを"
          "変えたのであれば、この guard の設定で取り込み直してください"
          "（`guard lists import {name2} FILE --new-key`）", "guard.knowledge"),
    # -- an old system's delivery history (knowledge/historyfiles.py), as
    #    `guard history import` and `guard policy test --history` report it (cli/history.py)
    Entry("no RecipientAddress column in the header",
          "見出し行に RecipientAddress の列がありません", "guard.knowledge"),
    Entry("no delivered recipients found (read as {fmt})",
          "配信した宛先が見つかりません（{fmt} として読み込み）", "guard.knowledge"),
    Entry("no syslog time at the start", "行の先頭に syslog の時刻がありません",
          "guard.knowledge"),
    Entry("bad gzip file: {error}", "gzip ファイルとして読めません: {error}",
          "guard.knowledge"),
    Entry("invalid address {got}: {t_error}", "アドレス {got} が正しくありません: {t_error}",
          "guard.knowledge"),
    Entry("unreadable time {got}", "時刻 {got} を読めません", "guard.knowledge"),
    Entry("history {path} (read as {fmt}): nothing imported ({n} bad rows, {m} not shown)",
          "履歴 {path}（{fmt} として読み込み）: 何も取り込んでいません（誤った行 {n} 行。"
          "うち {m} 行は表示していません）", "guard.cli"),
    Entry("history {path} (read as {fmt}): nothing imported ({n} bad rows)",
          "履歴 {path}（{fmt} として読み込み）: 何も取り込んでいません（誤った行 {n} 行）",
          "guard.cli"),
    Entry("cannot read {path}: {reason}", "{path} を読み込めません: {reason}", "guard.cli"),
    Entry("cannot tell the internal domains: the policy does not load ({first}); fix it "
          "first (`guard policy check`) or give --policy",
          "社内ドメインが分かりません: ポリシーを読み込めません（{first}）。先にポリシーを"
          "直す（`guard policy check`）か、--policy を指定してください", "guard.cli"),
    # -- why an address is not valid (email-validator's words, inside "invalid address")
    Entry("An email address must have an @-sign.", "@ がありません。", "email_validator"),
    Entry("There must be something after the @-sign.", "@ の後に何もありません。",
          "email_validator"),
    Entry("There must be something before the @-sign.", "@ の前に何もありません。",
          "email_validator"),
    Entry("The part after the @-sign is not valid. It should have a period.",
          "@ の後の部分が正しくありません（ドットが必要です）。", "email_validator"),
    Entry("The part after the @-sign is a special-use or reserved name that cannot be used "
          "with email.",
          "@ の後の部分は、メールには使えない特別な用途の名前（予約済みの名前）です。",
          "email_validator"),
    Entry("An email address cannot have two periods in a row.",
          "ドットを 2 つ続けることはできません。", "email_validator"),
    Entry("An email address cannot have a period and a hyphen next to each other.",
          "ドットとハイフンを隣り合わせにすることはできません。", "email_validator"),
    Entry("The email address contains invalid characters before the @-sign: {chars}.",
          "@ の前に使えない文字があります: {chars}。", "email_validator"),
    Entry("The part after the @-sign contains invalid characters: {chars}.",
          "@ の後に使えない文字があります: {chars}。", "email_validator"),
    # -- several problems on one line ("; ".join), each translated; English if one is not
    Entry("{msg_first}; {msg_rest}", "{msg_first}。{msg_rest}", "guard.knowledge"),
    # -- the generic pydantic form last: "<what was expected>; got <value>"
    Entry("{ph_expected}; got {v_got}", "{ph_expected}（指定された値: {v_got}）"),
)


def translate(message: str, lang: str, catalog: tuple[Entry, ...] = CATALOG) -> str:
    """One message in `lang`; the English message when no entry fits."""
    if lang != "ja":
        return message
    return _translate(message, catalog, []) or message


def entries_for(message: str, catalog: tuple[Entry, ...] = CATALOG) -> tuple[Entry, ...]:
    """The catalog entries that translate a message, the outer one first (for tests)."""
    used: list[Entry] = []
    return tuple(used) if _translate(message, catalog, used) is not None else ()


def _translate(message: str, catalog: tuple[Entry, ...], used: list[Entry]) -> str | None:
    for entry in catalog:
        m = entry.pattern.fullmatch(message)
        if m is None:
            continue
        inner: list[Entry] = []
        values = _values(m.groupdict(), catalog, inner)
        if values is not None:
            used += [entry, *inner]
            return entry.ja.format_map(values)
    return None


def _values(found: Mapping[str, str], catalog: tuple[Entry, ...], used: list[Entry]
            ) -> dict[str, str] | None:
    out: dict[str, str] = {}
    for name, text in found.items():
        if name.startswith("msg"):
            sub = _translate(text, catalog, used)
            if sub is None:  # the inner message has no entry: the whole one is English
                return None
            out[name] = sub
        elif name.startswith("ph_"):
            if text not in PHRASES:
                return None
            out[name] = PHRASES[text]
        elif name.startswith("v_"):
            out[name] = PHRASES.get(text, text)
        elif name.startswith("t_"):
            out[name] = _translate(text, catalog, used) or text
        else:
            out[name] = text
    return out


def localize_issue(issue: PolicyIssue, lang: str) -> str:
    """An issue as one line in `lang`: position and place as in English, message translated."""
    if lang != "ja":
        return str(issue)
    pos = issue.file
    if issue.line is not None:
        pos += f":{issue.line}:{issue.column}"
    prefix = "警告: " if issue.warning else ""
    message = translate(issue.message, lang)
    return f"{pos}: {prefix}{issue.where}: {message}" if issue.where else \
        f"{pos}: {prefix}{message}"


def localize_line(line: str, lang: str) -> str:
    """A line already printed as `str(PolicyIssue)` (a compiled policy's warnings, a list
    source's error): the longest tail after ': ' that is a known message is translated."""
    if lang != "ja":
        return line
    line = line.replace(": warning: ", ": 警告: ", 1)
    start = 0
    while True:
        cut = line.find(": ", start)
        if cut < 0:
            whole = _translate(line, CATALOG, []) if start == 0 else None
            return whole or line
        done = _translate(line[cut + 2:], CATALOG, [])
        if done is not None:
            return line[: cut + 2] + done
        start = cut + 2
