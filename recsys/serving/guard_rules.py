# ruff: noqa: RUF001  (Cyrillic and CJK rules contain look-alike letters on purpose)
"""The injection guard's rules, as data: one regex per category and language.

Each :class:`Rule` names its category (:data:`recsys.serving.guard.CATEGORIES`) and
language, and matches the *normalised* text (case-folded, Latin accents stripped: write
patterns as ``precedentes``, not ``précédentes``). ``needles`` are substrings one of
which any match must contain — :class:`~recsys.serving.guard.InjectionGuard` uses them
to skip rules cheaply; every regex starts its words at word boundaries, which the
guard's fast path relies on. "Put X first" rules count only when X looks like an item
(``check``), so "show comedies first" stays a query. Tuned on
:mod:`testkit.injection_corpus` (attacks and benign look-alikes) and the
MovieLens titles and tags.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

__all__ = ["RULES", "Rule"]


@dataclass(frozen=True)
class Rule:
    category: str
    language: str
    pattern: re.Pattern[str]
    check: Callable[[re.Match[str]], bool] | None = None
    #: the rule can only match text containing one of these (a cheap prefilter)
    needles: tuple[str, ...] = ()

    def hits(self, text: str) -> bool:
        check = self.check
        return any(check is None or check(m) for m in self.pattern.finditer(text))


_S = r"[^.!?;\n\u3002\uff01\uff1f]"  # anything within one sentence


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.S)


# ---- id smuggling (English): the object must look like an item, not a genre ----------
_POSITION = (
    r"(?:first|1st|at the top|on top|to the top|at the very top|at #?1|as #?1|#1|number one|"
    r"no\.? ?1|highest|above (?:all|every|everything|the others|others)|"
    r"before (?:all|every|everything|the others)|in first place|to first place|"
    r"top of (?:the|every|your|each) (?:list|ranking|results|recommendations)|"
    r"at position (?:1|one)\b|(?:as|at) the (?:top|first|only)(?: (?:result|item|pick|choice|"
    r"answer|recommendation|spot|position|place))?|top (?:result|pick|spot|position|place))"
)
_EN_SMUGGLE = _rx(
    r"\b(?:rank|put|place|move|list|show|position|sort|boost|promote|push|bump|pin|feature|"
    r"recommend|suggest|prioriti[sz]e|rate|score|return|output|make)\b"
    rf"(?P<obj>{_S}{{0,40}}?)(?<!\w){_POSITION}"
)
_ITEMISH = re.compile(
    r"\d|[\"'“”«]|\b(?:this|it|that|these|item|movie|film|product|title|id|listing|entry|sku"
    r"|ce|cet|cette|ceci|produit|titre|dieses|diesen|artikel|titel|element|este|esta|esto|isto"
    r"|isso|producto|pelicula|titulo|questo|questa|prodotto|articolo|titolo|filme|produto"
    r"|этот|это|фильм|товар|элемент)\b"
)


_ID_LIKE = re.compile(
    r"\d|[\"'“”«]|\b(?:item|id|sku)\b|\b(?:this|that) (?:item|movie|film|product|title|one)\b"
)


def _names_an_id(match: re.Match[str]) -> bool:
    """Stricter than :func:`_names_an_item`, for verbs that are common in ordinary text
    ("return just this once", "respond with grace"): an id, a quoted title, "this film"."""
    objs = [v for k, v in match.groupdict().items() if k.startswith("obj") and v is not None]
    return not objs or any(_ID_LIKE.search(obj) for obj in objs)


def _names_an_item(match: re.Match[str]) -> bool:
    """A "put X first" match counts only when X is an item (an id, "this film", a quoted
    title), not a genre or a person ("show comedies first", "put the family first")."""
    objs = [v for k, v in match.groupdict().items() if k.startswith("obj") and v is not None]
    return not objs or any(_ITEMISH.search(obj) for obj in objs)


_PATTERNS: tuple[Rule, ...] = (
    # ---- override ---------------------------------------------------------------------
    Rule(
        "override",
        "en",
        _rx(
            r"\b(?:ignore|disregard|forget|override|bypass|skip|abandon|drop)\b"
            rf"{_S}{{0,30}}?\b(?:previous|prior|above|earlier|preceding|foregoing|all|any|your|"
            r"system|original|initial|these|those|my|every|existing)\b"
            rf"{_S}{{0,20}}?\b(?:instructions?|rules|prompts?|directions|directives|guidelines|"
            r"guidance|commands|constraints|programming|policies|system message)\b"
        ),
    ),
    Rule(
        "override",
        "en",
        _rx(
            r"\b(?:ignore|disregard|forget)\s+(?:everything|all|anything)?\s*(?:the\s+|that\s+)?"
            r"(?:above|before this|said before|you were told)\b"
        ),
    ),
    Rule(
        "override",
        "en",
        _rx(
            r"\bnew (?:instructions?|rules|task|system prompt|candidates|items|ranking)\s*:"
            r"|\bdo not follow (?:the|your|any) (?:instructions|rules)|\byou must (?:now )?(?:obey|follow) (?:me|these|my)\b"
        ),
    ),
    Rule(
        "override",
        "fr",
        _rx(
            r"\b(?:ignore[rz]?|oublie[rz]?|ne (?:tiens|tenez) (?:pas|plus) compte)\b"
            rf"{_S}{{0,30}}?\b(?:instructions?|consignes?|regles|directives)\b\s*"
            r"(?:precedentes?|anterieures?|ci-dessus|d'avant|du systeme|initiales?)"
            r"|\b(?:ignore[rz]?|oublie[rz]?)\s+(?:toutes\s+)?(?:tes|vos)\s+"
            r"(?:instructions|consignes|regles|directives)\b"
        ),
    ),
    Rule(
        "override",
        "de",
        _rx(
            r"\b(?:ignoriere|ignorier|ignorieren sie|vergiss|vergessen sie|missachte|uberspringe)\b"
            rf"{_S}{{0,40}}?\b(?:anweisungen|instruktionen|regeln|befehle|vorgaben)\b"
        ),
    ),
    Rule(
        "override",
        "es",
        _rx(
            r"\b(?:ignora|ignore|ignorad|olvida|olvide|olvidad|omite)\b"
            rf"{_S}{{0,30}}?\b(?:instrucciones|reglas|indicaciones|directrices)\b\s*"
            r"(?:anteriores|previas|de arriba|del sistema|iniciales)"
            r"|\b(?:ignora|olvida|omite)\s+(?:todas\s+)?(?:tus|sus)\s+(?:instrucciones|reglas)\b"
        ),
    ),
    Rule(
        "override",
        "it",
        _rx(
            r"\b(?:ignora|ignorate|dimentica|dimenticate|trascura)\b"
            rf"{_S}{{0,30}}?\b(?:istruzioni|regole|indicazioni|direttive)\b\s*"
            r"(?:precedenti|di prima|sopra|del sistema|iniziali)"
            r"|\b(?:ignora|dimentica)\s+(?:tutte\s+)?(?:le\s+)?(?:tue|sue)\s+(?:istruzioni|regole)\b"
        ),
    ),
    Rule(
        "override",
        "pt",
        _rx(
            r"\b(?:ignore|ignora|ignorem|esqueca|esquece|esquecam|desconsidere)\b"
            rf"{_S}{{0,30}}?\b(?:instrucoes|regras|orientacoes|diretrizes|comandos)\b\s*"
            r"(?:anteriores|previas|acima|do sistema|iniciais)"
            r"|\b(?:ignore|esqueca|esquece|desconsidere)\s+(?:todas\s+)?(?:as\s+)?(?:suas|tuas)\s+"
            r"(?:instrucoes|regras)\b"
        ),
    ),
    Rule(
        "override",
        "ru",
        _rx(
            r"(?:игнорируй|игнорируйте|проигнорируй|забудь|забудьте|не обращай внимания на)"
            rf"{_S}{{0,40}}?(?:инструкци|правил|указани|команд)"
        ),
    ),
    Rule(
        "override",
        "zh",
        _rx(
            rf"(?:忽略|无视|忘记|忘掉|不要理会|忽视){_S}{{0,20}}?(?:指令|指示|说明|规则|提示|命令)"
        ),
    ),
    # ---- role markers and role-play -----------------------------------------------------
    Rule(
        "role",
        "any",
        _rx(
            r"(?:^|[\n\[<{(#|*])\s*(?:system|developer|assistant|tool)\s*"
            r"(?:prompt|message|note|override)?\s*[:\]>|]"
            r"|<\|?\s*(?:im_start|im_end|system|endoftext)\s*\|?>|\[/?inst\]"
            r"|###\s*(?:instruction|system|response)"
        ),
    ),
    Rule(
        "role",
        "en",
        _rx(
            r"\byou are now\b|\bfrom now on,? you\b|\b(?:you'?re|you are) (?:no longer|not) "
            r"(?:an? )?(?:ai|assistant|language model|bound|restricted|a recommender)\b"
            r"|\bpretend (?:that )?(?:you\b|you'?re\b|to be (?:an?|the) (?:different|unrestricted|"
            r"unfiltered|evil|new|ai|assistant|model|system|developer|admin))"
            r"|\bact as (?:if\b|though\b|an? (?:ai|assistant|model|chatbot|system|admin|"
            r"administrator|developer|unrestricted|unfiltered|different|new|recommender|ranking)\b"
            r"|the (?:system|developer|admin|recommender|ranker)\b)"
            r"|\b(?:roleplay|role-play|role play) as\b|\bjailbreak|\bdeveloper mode\b"
            r"|\bdo anything now\b|\byour new (?:role|persona|task|instructions?) (?:is|are)\b"
        ),
    ),
    Rule(
        "role",
        "fr",
        _rx(
            r"\b(?:tu es|vous etes) (?:maintenant|desormais|a present)\b|\b(?:fais|faites) semblant\b"
            r"|\b(?:agis|agissez|comporte-toi|comportez-vous) (?:comme|en tant que)\b"
            r"|\b(?:joue|jouez) le role d[e'] ?(?:un |une )?(?:ia|assistant|modele|systeme|admin)"
        ),
    ),
    Rule(
        "role",
        "de",
        _rx(
            r"\bdu bist (?:jetzt|nun|ab sofort)\b|\bsie sind (?:jetzt|nun|ab sofort)\b"
            r"|\b(?:tu|tun sie) so,? als\b|\b(?:agiere|handle|verhalte dich) (?:als|wie)\b"
            r"|\bab (?:jetzt|sofort) bist du\b"
        ),
    ),
    Rule(
        "role",
        "es",
        _rx(
            r"\b(?:ahora|a partir de ahora),? (?:eres|seras|usted es)\b|\bfinj?[ae] (?:ser|que)\b"
            r"|\b(?:actua|actue|comportate) como\b|\bhaz como si\b"
        ),
    ),
    Rule(
        "role",
        "it",
        _rx(
            r"\b(?:ora|adesso|d'ora in poi),? (?:sei|tu sei)\b|\bfingi (?:di|che)\b"
            r"|\bfai finta (?:di|che)\b|\b(?:comportati|agisci) (?:come|da)\b"
        ),
    ),
    Rule(
        "role",
        "pt",
        _rx(
            r"\bagora (?:voce e|tu es|es)\b|\b(?:finja|finge) (?:ser|que)\b"
            r"|\b(?:aja|atue|comporte-se) como\b|\ba partir de agora,? (?:voce|tu)\b"
        ),
    ),
    Rule(
        "role",
        "ru",
        _rx(
            r"теперь ты|ты теперь|притворись|представь,? что ты|(?:веди себя|действуй) как|с этого момента ты"
        ),
    ),
    Rule("role", "zh", _rx(r"你现在是|从现在起你|从现在开始你|假装你|扮演|你是一个没有限制")),
    # ---- fake JSON / tool output ----------------------------------------------------------
    Rule(
        "fake_output",
        "any",
        _rx(
            r"\{\s*[\"'][^\"'\n]{1,40}[\"']\s*:|[\"']role[\"']\s*:|\branked_ids\b"
            r"|[\"'](?:tool|function)_?(?:call|result|output)s?[\"']"
            r"|</?\s*(?:system|assistant|user|tool|instructions?|developer)\s*>"
            r"|<<<|>>>|\b(?:tool|function) (?:output|result|response)\s*:|```json"
        ),
    ),
    # ---- id smuggling -------------------------------------------------------------------
    Rule("id_smuggling", "en", _EN_SMUGGLE, _names_an_item),
    Rule(
        "id_smuggling",
        "en",
        _rx(
            r"\balways (?:recommend|rank|suggest|show|promote|put|place|include|pick|choose)\b"
            r"|\b(?:must|should|has to|needs to|shall) (?:always )?(?:be (?:ranked|placed|listed|"
            rf"shown|put|recommended)|appear)\b{_S}{{0,20}}?(?:{_POSITION}|to (?:every|all|each)\b)"
            r"|\b(?:is|are) the (?:best|only|top|perfect) (?:match|recommendation|choice|pick|result)"
            r" for (?:every|all|any|each)\b"
            rf"|\brecommend\b{_S}{{0,30}}\bto (?:everyone|every user|all users|everybody|each user)\b"
            rf"|\b(?:give|assign)\b{_S}{{0,30}}\b(?:highest|top|maximum|max) "
            r"(?:score|rank|rating|priority)\b"
        ),
    ),
    Rule(
        "id_smuggling",
        "fr",
        _rx(
            r"\brecommande[rz]? toujours\b|\btoujours recommander\b"
            r"|\b(?:classe[rz]?|mets|mettez|place[rz]?|positionne[rz]?)\b"
            rf"(?P<obj>{_S}{{0,40}}?)\b(?:en premier|en tete|en premiere position|au sommet|"
            r"a la premiere place|numero un)\b"
        ),
        _names_an_item,
    ),
    Rule(
        "id_smuggling",
        "de",
        _rx(
            r"\bempfiehl (?:immer|stets)\b|\bimmer empfehlen\b"
            r"|\b(?:setze|setz|stelle|stell|platziere|ranke|schiebe)\b"
            rf"(?P<obj>{_S}{{0,40}}?)(?:an (?:die )?erste(?:n)? (?:stelle|platz)|an die spitze|ganz oben|"
            r"auf platz (?:1|eins))"
        ),
        _names_an_item,
    ),
    Rule(
        "id_smuggling",
        "es",
        _rx(
            r"\brecomienda siempre\b|\bsiempre recomienda\b"
            r"|\b(?:pon|ponga|coloca|coloque|clasifica|situa|mueve)\b"
            rf"(?P<obj>{_S}{{0,40}}?)\b(?:en (?:el )?primer (?:lugar|puesto)|primero|en primera posicion|"
            r"arriba del todo|al principio)\b"
        ),
        _names_an_item,
    ),
    Rule(
        "id_smuggling",
        "it",
        _rx(
            r"\b(?:raccomanda|consiglia) sempre\b|\bsempre (?:raccomandare|consigliare)\b"
            r"|\b(?:metti|mettete|posiziona|sposta|classifica|colloca)\b"
            rf"(?P<obj>{_S}{{0,40}}?)\b(?:al primo posto|in cima|per primo|in prima posizione)\b"
        ),
        _names_an_item,
    ),
    Rule(
        "id_smuggling",
        "pt",
        _rx(
            r"\b(?:recomende|recomenda) sempre\b|\bsempre recomende\b"
            r"|\b(?:coloque|coloca|ponha|poe|classifique|mova|posicione)\b"
            rf"(?P<obj>{_S}{{0,40}}?)\b(?:em primeiro(?: lugar)?|no topo|na primeira posicao|primeiro)\b"
        ),
        _names_an_item,
    ),
    Rule(
        "id_smuggling",
        "ru",
        _rx(
            r"всегда рекомендуй|(?:поставь|помести|размести|перемести|ставь)"
            rf"(?P<obj>{_S}{{0,40}}?)(?:на перв|в начал|на верх|наверх|первым)"
        ),
        _names_an_item,
    ),
    Rule(
        "id_smuggling",
        "zh",
        _rx(
            rf"(?:总是|始终|一直)推荐|(?:把|将){_S}{{0,30}}?(?:排在|放在|置于|排到|放到)"
            rf"{_S}{{0,6}}?(?:第一|首位|最前|顶部|最上)|排(?:在)?第一"
        ),
    ),
    # ---- prompt leaks -------------------------------------------------------------------
    Rule(
        "prompt_leak",
        "en",
        _rx(
            r"\b(?:reveal|show|print|repeat|output|display|leak|dump|tell|give|share|recite|expose)\b"
            rf"{_S}{{0,25}}?\b(?:your|the|my|all|initial|hidden|secret|system|original)\b"
            rf"{_S}{{0,20}}?\b(?:system prompt|prompt|instructions|guidelines|configuration|"
            r"pre-?prompt)\b"
            r"|\bsystem prompt\b|\bwhat (?:are|were|is) your (?:instructions|rules|prompt|guidelines)"
            r"|\brepeat (?:everything|all|the text|the words) (?:above|before)\b"
            r"|\b(?:initial|hidden|secret) prompt\b"
        ),
    ),
    Rule(
        "prompt_leak",
        "fr",
        _rx(
            r"\b(?:montre|montrez|affiche|affichez|revele|revelez|repete|repetez|donne|donnez|dis|"
            rf"dites)(?:-moi)?\b{_S}{{0,25}}?\b(?:ton|votre|tes|vos|le|les)\b{_S}{{0,15}}?"
            r"\b(?:prompt|instructions|consignes)\b|\bprompt (?:systeme|initial)\b"
        ),
    ),
    Rule(
        "prompt_leak",
        "de",
        _rx(
            r"\b(?:zeig|zeige|verrate|gib|nenne|wiederhole)\b"
            rf"{_S}{{0,25}}?\b(?:deinen|deine|den|die|dein)\b{_S}{{0,15}}?"
            r"\b(?:prompt|systemprompt|anweisungen|instruktionen)\b|\bsystem-?prompt\b"
        ),
    ),
    Rule(
        "prompt_leak",
        "es",
        _rx(
            r"\b(?:muestra|muestrame|revela|revelame|repite|dime|ensena|ensename)\b"
            rf"{_S}{{0,25}}?\b(?:tu|tus|el|las|sus|su)\b{_S}{{0,15}}?\b(?:prompt|instrucciones)\b"
        ),
    ),
    Rule(
        "prompt_leak",
        "it",
        _rx(
            r"\b(?:mostra|mostrami|rivela|rivelami|ripeti|dimmi)\b"
            rf"{_S}{{0,25}}?\b(?:tuo|tue|il|le)\b{_S}{{0,15}}?\b(?:prompt|istruzioni)\b"
        ),
    ),
    Rule(
        "prompt_leak",
        "pt",
        _rx(
            r"\b(?:mostre|mostra|revele|revela|repita|diga)\b"
            rf"{_S}{{0,25}}?\b(?:seu|suas|o|as|teu|tuas)\b{_S}{{0,15}}?\b(?:prompt|instrucoes)\b"
        ),
    ),
    Rule(
        "prompt_leak",
        "ru",
        _rx(
            rf"(?:покажи|раскрой|выведи|повтори|напиши|скажи){_S}{{0,25}}?(?:промпт|инструкци|системн)"
            r"|системн\w* (?:промпт|подсказк|сообщени)"
        ),
    ),
    Rule(
        "prompt_leak",
        "zh",
        _rx(
            rf"(?:显示|告诉我|输出|泄露|重复|给我看|展示){_S}{{0,10}}?(?:系统提示|提示词|指令|指示|系统消息)"
            r"|系统提示"
        ),
    ),
)

# Needles per rule, in the order of _PATTERNS: each rule's regex can only match text that
# contains one of them, so most ordinary text is cleared by substring tests alone.
_NEEDLES: tuple[tuple[str, ...], ...] = (
    # override: en x3, fr, de, es, it, pt, ru, zh
    (
        "instruction",
        "rules",
        "prompt",
        "direction",
        "directive",
        "guideline",
        "guidance",
        "command",
        "constraint",
        "programming",
        "policies",
        "system message",
    ),
    ("above", "before this", "said before", "you were told"),
    (
        "new instruction",
        "new rule",
        "new task",
        "new system prompt",
        "new candidates",
        "new items",
        "new ranking",
        "do not follow",
        "you must",
    ),
    ("instruction", "consigne", "regles", "directive"),
    ("anweisung", "instruktion", "regeln", "befehle", "vorgaben"),
    ("instrucciones", "reglas", "indicaciones", "directrices"),
    ("istruzioni", "regole", "indicazioni", "direttive"),
    ("instrucoes", "regras", "orientacoes", "diretrizes", "comandos"),
    ("инструкци", "правил", "указани", "команд"),
    ("指令", "指示", "说明", "规则", "提示", "命令"),
    # role: any, en, fr, de, es, it, pt, ru, zh
    ("system", "developer", "assistant", "tool", "im_start", "im_end", "endoftext", "inst]", "###"),
    (
        "you are",
        "youre",
        "you're",
        "from now on",
        "pretend",
        "act as",
        "roleplay",
        "role-play",
        "role play",
        "jailbreak",
        "developer mode",
        "do anything now",
        "your new",
    ),
    ("maintenant", "desormais", "a present", "semblant", "comme", "en tant que", "le role"),
    ("du bist", "sie sind", " so", "agiere", "handle", "verhalte", "bist du"),
    ("eres", "seras", "usted es", "finge", "finja", "como"),
    ("sei", "fingi", "finta", "comportati", "agisci"),
    ("agora", "finja", "finge", "como"),
    ("теперь", "притворись", "представь", "как", "с этого момента"),
    ("你现在是", "从现在", "假装你", "扮演", "没有限制"),
    # fake output
    ("{", "role", "ranked_ids", "tool", "function", "<", ">", "```"),
    # id smuggling: en x2, fr, de, es, it, pt, ru, zh
    (
        "first",
        "1st",
        "top",
        "#1",
        " 1",
        ".1",
        "no1",
        "number one",
        "highest",
        "above",
        "before",
        "position",
        "only",
    ),
    (
        "always",
        "be ranked",
        "be placed",
        "be listed",
        "be shown",
        "be put",
        "be recommended",
        "appear",
        "the best",
        "the only",
        "the top",
        "the perfect",
        "everyone",
        "every user",
        "all users",
        "everybody",
        "each user",
        "highest",
        "top ",
        "maximum",
        "max ",
    ),
    (
        "toujours",
        "en premier",
        "en tete",
        "en premiere",
        "au sommet",
        "premiere place",
        "numero un",
    ),
    ("immer", "stets", "erste", "spitze", "ganz oben", "platz 1", "platz eins"),
    ("siempre", "primer", "primera", "arriba del todo", "al principio"),
    ("sempre", "primo posto", "in cima", "per primo", "prima posizione"),
    ("sempre", "primeiro", "no topo", "primeira"),
    ("всегда", "на перв", "в начал", "на верх", "наверх", "первым"),
    ("推荐", "第一", "首位", "最前", "顶部", "最上"),
    # prompt leak: en, fr, de, es, it, pt, ru, zh
    (
        "prompt",
        "instructions",
        "guidelines",
        "configuration",
        "what are your",
        "what were your",
        "what is your",
        "repeat",
    ),
    ("prompt", "instructions", "consignes"),
    ("prompt", "systemprompt", "anweisungen", "instruktionen"),
    ("prompt", "instrucciones"),
    ("prompt", "istruzioni"),
    ("prompt", "instrucoes"),
    ("промпт", "инструкци", "системн"),
    ("系统提示", "提示词", "指令", "指示", "系统消息"),
)

# More rules, each with its needles inline.
_EXTRA: tuple[Rule, ...] = (
    Rule(
        "override",
        "en",
        _rx(
            r"\b(?:ignore|disregard|forget)\b (?:the |this |your )?(?:user'?s?|customer'?s?|"
            r"their|the|this) (?:query|request|question|preferences|input|history|search|"
            r"context|data)\b|\b(?:begin|start) (?:new |the )?instructions?\b"
            r"|\bend of (?:the )?(?:data|input|context|candidates|document|user input|query)"
            r"\s*(?:[.:\]>=-]|$)"
        ),
        needles=(
            "query",
            "request",
            "question",
            "preferences",
            "input",
            "history",
            "search",
            "context",
            "data",
            "instruction",
            "candidates",
            "document",
        ),
    ),
    Rule(
        "override",
        "es/it/pt/fr",
        _rx(
            r"\b(?:ignora|ignore|ignorad|olvida|olvide)\s+(?:todas\s+)?las\s+instrucciones\b"
            r"|\b(?:ignora|dimentica)\s+(?:tutte\s+)?le\s+istruzioni\b"
            r"|\b(?:ignore|esqueca)\s+(?:todas\s+)?as\s+instrucoes\b"
            r"|\b(?:ignore[zr]?|oublie[zr]?)\s+(?:toutes\s+)?les\s+instructions\b"
        ),
        needles=("instrucciones", "istruzioni", "instrucoes", "instructions"),
    ),
    Rule(
        "role",
        "en",
        _rx(
            r"\byou are (?:a|an|the) (?:helpful |friendly |new |different |unrestricted )?"
            r"(?:assistant|ai|chatbot|language model|llm)\b"
        ),
        needles=("assistant", "ai", "chatbot", "model", "llm"),
    ),
    Rule(
        "fake_output",
        "any",
        _rx(
            r"\b(?:correct|right|final|expected|real|true) (?:answer|output|ranking|response|"
            r"order|result)s?\s*(?:is\s*|are\s*)?:|</?\s*(?:candidates|user|items?|query|data|"
            r"context|document)\s*>|\b(?:ranked|rank|ranking|item|candidate)_ids?\b"
        ),
        needles=("answer", "output", "ranking", "response", "order", "result", "<", "ids", "id"),
    ),
    Rule(
        "id_smuggling",
        "en",
        _rx(
            rf"\b(?:respond|reply|answer)\s+(?:only\s+)?with\b(?P<obj>{_S}{{0,30}})"
            r"|\b(?:return|output|print|list|show|recommend|suggest)\s+(?:only|just|exclusively)"
            rf"\b(?P<obj2>{_S}{{0,30}})"
            rf"|\b(?:promote|boost|upweight|prioriti[sz]e|upvote)\b(?P<obj3>{_S}{{0,20}})"
        ),
        _names_an_id,
        needles=(
            "respond",
            "reply",
            "answer",
            "return",
            "output",
            "print",
            "list",
            "show",
            "recommend",
            "suggest",
            "promote",
            "boost",
            "upweight",
            "prioriti",
            "upvote",
        ),
    ),
    Rule(
        "id_smuggling",
        "es/de",
        _rx(
            rf"\b(?:recomienda|recomiende)\b(?P<obj>{_S}{{0,30}}?)\b(?:primero|en primer lugar)"
            rf"|\bempfiehl\b(?P<obj2>{_S}{{0,30}})"
        ),
        _names_an_item,
        needles=("recomienda", "recomiende", "empfiehl"),
    ),
)

RULES: tuple[Rule, ...] = (
    *(replace(rule, needles=needles) for rule, needles in zip(_PATTERNS, _NEEDLES, strict=True)),
    *_EXTRA,
)
