"""The rule planner's vocabulary, English and Chinese: parts, colours, intensities, verbs, a small glossary.

Kept as data apart from the parser so that adding a synonym is a one-line change a
reviewer can read. Patterns are regular expressions matched case-insensitively; a
label entry lists alternatives in preference order (``裙子`` is a Skirt, or the Dress
when the image has no skirt).
"""

from __future__ import annotations

#: Stands for every label of the image but the background and the selection ("the person", 人物).
PERSON = "<person>"

#: Part words → labels. Each entry: (pattern, [label groups in preference order]); a group
#: is every label it means ("shoes" = both shoes). The first group the image has wins.
PART_WORDS: list[tuple[str, list[list[str]]]] = [
    # The selection first, so "this" is not read as anything else.
    (r"\b(?:the |this |my )?selection\b"
     r"|\b(?:selected|highlighted|marked|circled|masked|brushed) (?:area|region|part|bit|spot|thing|object)\b"
     r"|\bthis (?:area|region|part|bit|spot)\b|\b(?:the )?(?:thing|part|area|bit|spot)s? (?:that )?"
     r"I (?:selected|circled|marked|highlighted|brushed|painted over)\b|\bwhat I (?:selected|circled|marked|highlighted"
     r"|brushed)\b"
     r"|选中(?:的)?(?:区域|部分|地方)?|选区|框选(?:的)?(?:区域|部分)?|涂抹(?:的)?区域|这(?:个|块|片)?区域|这里"
     r"|这(?:一)?(?:部分|块|片)|(?:我)?(?:圈|框|涂|标|画)(?:出来|起来|出|住)的(?:地方|区域|部分)?",
     [["Selection"]]),
    (r"\bleft (?:shoe|sneaker|boot)s?\b|左(?:脚的?)?鞋(?:子)?", [["Left-shoe"]]),
    (r"\bright (?:shoe|sneaker|boot)s?\b|右(?:脚的?)?鞋(?:子)?", [["Right-shoe"]]),
    (r"\b(?:shoes?|sneakers?|boots?|heels|footwear)\b|鞋子?|靴子?|高跟鞋|运动鞋", [["Left-shoe", "Right-shoe"]]),
    (r"\bleft arm\b|左(?:手)?臂|左手", [["Left-arm"]]),
    (r"\bright arm\b|右(?:手)?臂|右手", [["Right-arm"]]),
    (r"\barms?\b|(?<!-)\bhands?\b(?!-)|手臂|胳膊|双手|双臂", [["Left-arm", "Right-arm"]]),
    (r"\bleft leg\b|左腿", [["Left-leg"]]),
    (r"\bright leg\b|右腿", [["Right-leg"]]),
    (r"\blegs?\b|腿部?|双腿", [["Left-leg", "Right-leg"]]),
    (r"\bbackground\b|\bbackdrop\b|\bscenery\b|\bsky\b|\bsetting\b|背景|背後|环境|场景|天空", [["Background"]]),
    (r"\bsun ?glasses\b|\bshades\b|\bglasses\b|\bspectacles\b|墨镜|太阳镜|太阳眼镜|眼镜", [["Sunglasses"]]),
    (r"\bhats?\b|\bcaps?\b|\bbeanie\b|\bberet\b|帽子|草帽|帽", [["Hat"]]),
    (r"\bhair(?:style|cut)?\b|头发|发型|发色|秀发|长发|短发|卷发", [["Hair"]]),
    # Face parts that a segmenter may label apart (the embedded one does); else the whole Face.
    (r"\beye ?brows?\b|\bbrows\b|眉毛|眉", [["Eyebrows"], ["Face"]]),
    (r"\blips\b|\bmouth\b|嘴唇|双唇|唇部|嘴巴|唇|嘴", [["Lips"], ["Face"]]),
    (r"\beyes?\b|\birises\b|\biris\b|眼睛|眼部|双眼|眼珠|瞳孔|眼", [["Eyes"], ["Face"]]),
    (r"\bface\b|\bfacial\b|\bnose\b|脸部|面部|脸庞|脸蛋|面容|脸|鼻子|五官", [["Face"]]),
    (r"\bneck\b|\bthroat\b|脖子|颈部|脖颈|颈", [["Neck"]]),
    # The person as a whole: every part of them this image has (not the background).
    # Not before a possessive ("the person's shirt" is the shirt).
    (r"\b(?:person|people|body|subject|figure)\b(?!['’]s\b)|(?:人物|人像|整个人|身体)(?!的)", [[PERSON]]),
    # English keeps a dress and a skirt apart; the Chinese 连衣裙/长裙 falls back to the Skirt label (the
    # seed dataset labels them so, and segmenters often split a dress into Skirt and Upper-clothes).
    (r"\bdress(?:es)?\b|\bgown\b", [["Dress"]]),
    (r"连衣裙|长裙", [["Dress"], ["Skirt"]]),
    (r"\bskirts?\b|半身裙|短裙", [["Skirt"]]),
    (r"裙子|裙摆|裙", [["Skirt"], ["Dress"]]),
    (r"\bpants\b|\btrousers\b|\bjeans\b|\bshorts\b|裤子|长裤|短裤|牛仔裤|裤", [["Pants"]]),
    (r"\bbelt\b|腰带|皮带", [["Belt"]]),
    (r"\bscarf\b|\bscarves\b|围巾", [["Scarf"]]),
    (r"\b(?:hand)?bags?\b|\bpurse\b|\bbackpack\b|\bhandbag\b|手提包|背包|挎包|包包|(?<!面)包(?![括含装])", [["Bag"]]),
    (r"\b(?:t-?shirt|tee|shirt|top|blouse|jacket|coat|sweater|hoodie|jumper|cardigan|vest|outfit|clothes"
     r"|clothing)s?\b|上衣|衣服|外套|夹克|衬衫|衬衣|毛衣|卫衣|T恤|t恤|上装|服装|衣着|上身",
     [["Upper-clothes"], ["Dress"]]),
]

#: A side said apart from a paired part's word ("the right-hand shoe", "the shoe on the left", "左边的鞋子"):
#: it keeps only that side's label. Labels follow the person's own left and right, as the segmenters do.
SIDE_BEFORE = (r"(?:\b(?P<en>left|right)(?:[- ]hand)?(?:[- ]side)?\s+(?:[a-z]+\s+)?$)"
               r"|(?:(?P<zh>左|右)(?:边|侧|手边|脚|手)?的?$)")
SIDE_AFTER = r"^\s*(?:on|at) (?:the|her|his|their|my) (?P<en>left|right)(?:[- ]hand)?(?: side)?\b"

#: Words that mean "the whole picture" (whole-image adjustments target []).
WHOLE_IMAGE = (r"\b(?:it|image|photo|picture|pic|everything|whole thing|overall)\b"
               r"|整张(?:图|图片|照片)?|整体|整幅|全图|图片|照片|画面|图像")

#: "it"/"them" and 其/它 point back to the previous clause's parts.
PRONOUN = r"\b(?:it|them|its)\b|其|它们?|她的|他的"

#: Intensity → scale of the default amount (0.3) and blur strength (0.5).
LOW_INTENSITY = (r"\b(?:a (?:little )?bit|a little|slightly|a touch|somewhat|a tad|subtly|gently|lightly)\b"
                 r"|\b(?:a tiny bit|a hair|marginally|mildly|kind of|kinda)\b"
                 r"|一点|一些|稍微|稍稍|稍|略微|略|轻微|微微|些许|轻轻|有点|有些")
HIGH_INTENSITY = (r"\b(?:much|a lot|very|way|really|significantly|strongly|heavily|a great deal|extremely|super)\b"
                  r"|很|非常|大幅|十分|特别|极其|极|超级|大大|强烈|明显")

#: Tonal adjustments: (pattern, property, sign). Order matters: "less bright" before "bright".
ADJUST_WORDS: list[tuple[str, str, int]] = [
    (r"\bblack(?: and |-|&)white\b|\bgr[ae]yscale\b|\bmonochrome\b|黑白", "saturation", -9),
    (r"\bless (?:bright|light)\b|\bdarker\b|\bdarken\b|\bdimmer\b|\bdim\b|调暗|变暗|暗一|更暗|压暗|加深|降低亮度|减少亮度|暗",
     "brightness", -1),
    (r"\bbrighter\b|\bbrighten\b|\blighter\b|\blighten\b|\bmore light\b|\bexposure up\b"
     r"|提亮|调亮|变亮|亮一|更亮|增加亮度|提高亮度|增强亮度|亮度|(?<![漂闪光])亮",
     "brightness", 1),
    (r"\bcolou?rs?\b(?=.*\b(?:pop|popping|punchier|richer)\b)|\b(?:tone|dial|turn) (?:down|up) the colou?rs?\b"
     r"|\bcolou?rs? (?:down|up)\b", "saturation", 1),
    (r"\bless contrast\b|\blower (?:the )?contrast\b|\breduce (?:the )?contrast\b|\bflatter\b|降低对比度?|减少对比度?|减弱对比度?",
     "contrast", -1),
    (r"\bmore contrast\b|\bcontrast\b|\bpunchier\b|对比度|对比", "contrast", 1),
    (r"\bless (?:vivid|saturated|colou?rful)\b|\bdesaturate\w*\b|\bmuted\b|\bwashed[- ]out\b|\bfaded\b"
     r"|降低饱和度?|减少饱和度?|淡一|更淡|素雅", "saturation", -1),
    (r"\bmore (?:vivid|saturated|colou?rful)\b|\bvivid\b|\bsaturat\w*\b|\bcolou?rful\b|\bvibrant\b"
     r"|鲜艳|饱和度?|艳丽|色彩更|浓郁", "saturation", 1),
    (r"\bcooler\b|\bcolder\b|\bcool(?: it)? down\b|\bcool tones?\b|\bbluer\b|冷色调?|冷一|更冷|偏冷|冷", "warmth", -1),
    (r"\bwarmer\b|\bwarm(?: it)? up\b|\bwarm tones?\b|\bwarmth\b|暖色调?|暖一|更暖|偏暖|温暖|暖", "warmth", 1),
    (r"\bsoften\b|\bsofter\b|\bless sharp\b|柔化|柔和", "sharpness", -1),
    (r"\bsharpen\w*\b|\bsharper\b|\bcrisper\b|\bmore detail(?:ed)?\b|锐化|清晰度?|更清晰|锐利", "sharpness", 1),
]

#: A positive adjustment said with one of these goes the other way: "not so vivid", "对比度降低一点", "饱和度低一点".
LESSEN = (r"\b(?:not (?:so|as|that|too)|less|lower|reduce|decrease|tone down|turn down|dial (?:down|back))\b"
          r"|别那么|不要那么|不那么|没那么|不用那么|降低|减少|减弱|调低|低一|低些|低点|小一|弱一|降一")

#: Complaints: the state the person dislikes, and the adjustment that undoes it (its opposite).
#: (pattern, property, sign of the state). Said after "too"/太 ("it's too dark", "这张太暗了"), or, for words
#: that are complaints by themselves, after "is"/"looks" ("the image is blurry", "照片有点模糊").
STATE_WORDS: list[tuple[str, str, int]] = [
    (r"\bwashed[- ]out\b|\bdull\b|\bpale\b|\bmuted\b|\bfaded\b|\bdrab\b|\blifeless\b|\bbland\b|\bgr[ae]y(?:ish)?\b"
     r"|暗淡|黯淡|苍白|寡淡|灰蒙蒙|发灰|太灰|灰|(?<!冷)淡|素|没什么(?:色彩|颜色)|没有(?:色彩|颜色)", "saturation", -1),
    (r"\b(?:over-?)?saturated\b|\bvivid\b|\bcolou?rful\b|\bgarish\b|\bintense\b|\bloud\b|鲜艳|艳丽|艳|花哨|浓",
     "saturation", 1),
    (r"\bdark(?:er)?\b|\bdim\b|\bunder-?exposed\b|\bmurky\b|\bgloomy\b|\bshadowy\b|欠曝|(?<!黑)暗|(?<!淡)黑(?!白)",
     "brightness", -1),
    (r"\bbright(?:er)?\b|\blight\b|\bover-?exposed\b|\bblown out\b|\bglaring\b|过曝|曝光过度|刺眼|(?<![漂闪光])亮",
     "brightness", 1),
    (r"\bcold\b|\bcool\b|\bblu(?:e|ish)\b|冷|偏蓝|发蓝", "warmth", -1),
    (r"\bwarm\b|\byellow(?:ish)?\b|\borange(?:y)?\b|暖|偏黄|发黄|(?<!金)黄", "warmth", 1),
    (r"\bblurry\b|\bblurred\b|\bfuzzy\b|\bout of focus\b|\bunsharp\b|\bsoft\b|模糊|糊|不清楚|不清晰|不够清晰", "sharpness", -1),
    (r"\bover-?sharpened\b|\bsharp\b|锐", "sharpness", 1),
    (r"\bflat\b|\blow[- ]contrast\b|平淡|没有层次|没层次", "contrast", -1),
    (r"\bcontrasty\b|\bharsh\b|\bhigh[- ]contrast\b", "contrast", 1),
]
#: Words that are complaints without "too": the state is a fault by itself.
FAULT_WORDS = (r"\bwashed[- ]out\b|\bdull\b|\bfaded\b|\bdrab\b|\blifeless\b|\bmurky\b|\bblurry\b|\bblurred\b"
               r"|\bfuzzy\b|\bout of focus\b|\bflat\b|\bunder-?exposed\b|\bover-?exposed\b|\bgloomy\b"
               r"|暗淡|黯淡|灰蒙蒙|发灰|发黄|发蓝|偏黄|偏蓝|过曝|欠曝|曝光过度|模糊|不清楚|不清晰|没层次|没有层次"
               r"|没什么(?:色彩|颜色)|没有(?:色彩|颜色)")
#: "too" and its kin before a state; "is/looks" (or Chinese 了, 有点) before a fault word.
COMPLAINT_MARKER = r"\b(?:too|overly|excessively)\b|太(?![阳太])|过于|过分|(?<![曝])过(?=[亮暗艳冷暖黄蓝灰淡])"
COMPLAINT_COPULA = (r"\b(?:is|are|was|looks?|seems?|feels?|appears?|got|gotten|it['’]s|kind of|kinda|a bit|so)\b"
                    r"|了|有点|有些|很|好|真|怎么这么|这么")
#: A property said with how much there is: "too much contrast" (undo: less), "not enough contrast" (more).
TONE_NOUNS: list[tuple[str, str]] = [
    (r"\bcontrast\b|对比度?", "contrast"),
    (r"\bsaturation\b|\bcolou?rs?\b|饱和度?|色彩|颜色", "saturation"),
    (r"\bbrightness\b|\bexposure\b|\blight\b|亮度|曝光|光线", "brightness"),
    (r"\bwarmth\b|色温", "warmth"),
    (r"\bsharpness\b|\bdetails?\b|清晰度|锐度|细节", "sharpness"),
]
TOO_MUCH = (r"\b(?:too much|too high|too strong|so much|overdone|excessive)\b"
            r"|(?<![对])太(?:高|强|多|重|大|足)|过(?:高|强|重)")
TOO_LITTLE = (r"\b(?:not enough|too low|too weak|too little|lacks?|lacking|missing|no real|barely any)\b"
              r"|不够|太(?:低|弱|少)|缺少|缺乏|没什么|没有什么|不足")

#: Face attributes that are retouched, not removed or regenerated: "去掉脸上的痘痘" is a `face` retouch.
FACE_ATTRIBUTES = (r"\bacne\b|\bpimples?\b|\bzits?\b|\bblemish\w*\b|\bwrinkles?\b|\bdark circles\b|\beye ?bags\b"
                   r"|\bbags under\b|\bfreckles\b|\bcrow['’]?s feet\b"
                   r"|\beyes?\b[^,.;]*\b(?:bigger|larger|wider|rounder)\b|\b(?:bigger|larger|wider|rounder) eyes\b"
                   r"|痘痘?|痘印|粉刺|雀斑|皱纹|黑眼圈|眼袋|法令纹|鱼尾纹"
                   r"|眼睛(?:放大|大一|大些|更大|再大|变大|大点)|大眼|双眼皮|瘦脸")

BLUR_WORDS = r"\bblur\w*\b|\bbokeh\b|\bdefocus\w*\b|\bout of focus\b|虚化|模糊|景深"
REMOVE_WORDS = (r"\bremove\b|\berase\b|\bdelete\b|\bget rid of\b|\btake (?:out|off|away)\b|\beliminate\b|\bwithout\b"
                r"|去掉|去除|删除|删掉|移除|擦除|擦掉|抹去|抹掉|消除|拿掉|不要")
FACE_WORDS = (r"\bsmil\w*\b|\blaugh\w*\b|\bgrin\w*\b|\bmake-?up\b|\blipstick\b|\bwrinkles?\b|\bskin\b|\bexpression\b"
              r"|\bhappier\b|\bfreckles\b|\b(?:more )?awake\b|\btired\b|\benergetic\b|\byouthful\b|\byounger\b"
              r"|\bblemish\w*\b|\bretouch\w*\b|\bbeautif\w*\b"
              r"|微笑|笑容|笑|精神|憔悴|疲惫|年轻|美颜|美白|妆容?|口红|唇|皮肤|肌肤|肤色|肤质|表情|五官|气色|磨皮|美化面部|美化脸")
STYLE_WORDS = (r"\bwater-?colou?r\b|\boil painting\b|\bsketch\b|\banime\b|\bcartoon\b|\bpixel art\b|\bcomic\b"
               r"|\bvan gogh\b|\bcyberpunk\b|\bukiyo-?e\b|\bin the style of\b|\bstyle\b|\bpainting\b|\bimpressionis\w*\b"
               r"|风格|画风|水彩|油画|素描|动漫|卡通|漫画|像素|赛博朋克|浮世绘|国画|水墨|印象派")
#: Whole-image looks: a `style` when no part is named ("make it look vintage", "电影感"); with a part
#: ("复古圆框眼镜") they describe the part and are left to the other readings.
LOOK_WORDS = (r"\bcinematic\b|\bshot on film\b|\bon film\b|\bfilm (?:look|photo|grain|feel|style|camera)\b"
              r"|\bvintage\b|\bretro\b|\bnoir\b|\bpolaroid\b|\blomo\b|\bsepia\b|\bdreamy\b|\bmoody\b"
              r"|电影感|电影风|胶片感?|复古|日系|小清新|港风|梦幻感|氛围感")
#: "to a thing" verbs: the text after the marker is what the targets become.
CHANGE_MARKERS_ZH = (r"(?:更换|替换|改换|调换|修改|更改|调整|改变|转换|换|改|变|染|涂|刷|处理|设计|打造|装扮)"
                     r"(?:为|成|作|上(?![衣身装]))")
CHANGE_VERBS_EN = (r"\b(?:change|replace|turn|make|paint|dye|colou?r|swap|switch|transform|convert|recolou?r"
                   r"|redo|restyle|edit|modify|give)\b")
CHANGE_MARKERS_EN = r"\b(?:to|into|with|for|as)\b"
#: "put her on a beach", "place him in a forest": a new background.
PUT_SOMEWHERE_EN = (r"\b(?:put|place|move|set|send|take)\b\s+(?:her|him|them|me|it|the (?:person|woman|man|girl|boy|model))"
                    r"\s+(?:on|in|at|into|onto|to|by|under)\b\s*(?P<where>.+)")
#: Verbs that only say "modify these parts" without saying how (Chinese).
RETOUCH_ZH = (r"修饰|美化|修改|调整|改变|更改|更换|替换|换掉|换|装饰|点缀|改造|重新设计|优化|处理|增强|加强|提升|突出|强调"
              r"|修正|柔化|美容|修剪|梳理|微调|微整形|修整|画上|打理|造型")
#: "让头发更加蓬松": 让/使 + parts + a comparative says how the parts should look.
MAKE_ZH = r"(?:让|使|令)(?P<what>.+?)(?:更加|更为|更|变得|呈现|显得|看起来|具有|更具)(?P<how>.*)"
ADD_ZH = r"增加|添加|加入|加上|添上|增添|营造|添|戴上|带上|穿上|配上|换上|涂上|佩戴|搭配|戴|穿"
#: Putting the person somewhere else: a new background.
PUT_SOMEWHERE_ZH = r"(?:置于|放在|放到|放进|置身于?|移到|搬到)(?P<where>.+)"
#: With only the Face as target, these make a retouch (`face`), not a tonal change.
FACE_RETOUCH = (r"细节|轮廓|生动|特征|美|光滑|精致|立体|自然|气色|神态|details?|contours?|lively|features|natural"
                r"|glow\w*|radian\w*")
#: Pieces that carry no request: preambles and list numbers.
SKIP_CLAUSE = r"^(?:根据|按照|基于)[^，,。]*?(?:信息|标签|结果|部分)(?:[:：])?$|^\d+$|^(?:修改方案|方案)[:：]?$"
ADD_EN = r"\b(?:add|include|put on|wear|insert)\b"

#: Clause separators: punctuation, and conjunctions that join actions.
CLAUSE_SPLIT = (r"([，,；;。.!！?？\n]+|\s+and then\s+|\s+then\s+|\s+also\s+"
                r"|并且|然后|并|同时|再|还要|还有|以及|另外|此外|接着|而且)")
#: Separators that may join two parts of one clause ("the shirt and the pants", "帽子、上衣").
PART_JOIN = r"(\s+and\s+|\s+plus\s+|、)"

#: Chinese colour words with their light/dark forms as CSS names the validator accepts.
COLOR_ZH_EN = {
    "白": "white", "黑": "black", "红": "red", "橙": "orange", "橘": "orange", "黄": "yellow", "绿": "green",
    "青": "teal", "蓝": "blue", "紫": "purple", "粉": "pink", "灰": "gray", "棕": "brown", "褐": "brown",
    "咖啡": "saddlebrown", "金": "gold", "银": "silver", "米": "beige", "卡其": "khaki", "藏青": "navy",
    "天蓝": "skyblue", "海蓝": "steelblue", "宝蓝": "royalblue", "酒红": "darkred", "玫红": "mediumvioletred",
    "墨绿": "darkgreen", "军绿": "olivedrab", "薄荷绿": "mediumaquamarine",
}
#: What may surround a colour in "a bright red" / "明亮的红色" without making it a thing.
COLOR_FILLER = (r"\b(?:a|an|the|colou?r|shade|of|bright|brighter|deep|nice|pure|more|some|in|all|to|into)\b"
                r"|的|颜色|色调|色系|明亮|鲜亮|亮|一种|一个|全|纯|更|种|调|系|款")

#: A small glossary for Chinese prompt text, so a generative model gets English where we know it.
GLOSSARY_ZH_EN: list[tuple[str, str]] = [
    ("夕阳下的海滩", "beach at sunset"), ("海边夕阳", "seaside sunset"), ("夕阳", "sunset"), ("日落", "sunset"),
    ("蓝天白云", "blue sky with white clouds"), ("蓝天", "blue sky"), ("白云", "white clouds"),
    ("星空", "starry sky"), ("海滩", "beach"), ("沙滩", "sandy beach"), ("大海", "sea"), ("海洋", "ocean"),
    ("海边", "seaside"), ("森林", "forest"), ("树林", "woods"), ("草地", "meadow"), ("草原", "grassland"),
    ("花园", "garden"), ("花海", "sea of flowers"), ("城市街道", "city street"), ("街道", "street"),
    ("都市", "city"), ("城市", "city"), ("夜景", "night view"), ("雪山", "snowy mountains"), ("雪景", "snowy scene"),
    ("山", "mountains"), ("湖", "lake"), ("瀑布", "waterfall"), ("沙漠", "desert"), ("公园", "park"),
    ("咖啡馆", "cafe"), ("教室", "classroom"), ("办公室", "office"), ("樱花", "cherry blossoms"),
    ("连衣裙", "dress"), ("衬衫", "shirt"), ("T恤", "T-shirt"), ("夹克", "jacket"), ("外套", "coat"),
    ("毛衣", "sweater"), ("卫衣", "hoodie"), ("西装", "suit"), ("裙子", "skirt"), ("牛仔裤", "jeans"),
    ("裤子", "pants"), ("草帽", "straw hat"), ("帽子", "hat"), ("墨镜", "sunglasses"), ("高跟鞋", "high heels"),
    ("运动鞋", "sneakers"), ("围巾", "scarf"), ("卷发", "curly hair"), ("长发", "long hair"), ("短发", "short hair"),
    ("阳光", "sunlight"), ("效果", "effect"), ("彩虹", "rainbow"), ("花朵", "flowers"), ("蝴蝶", "butterflies"),
    ("水彩", "watercolor"), ("油画", "oil painting"), ("素描", "pencil sketch"), ("动漫", "anime"),
    ("卡通", "cartoon"), ("漫画", "comic"), ("像素", "pixel art"), ("赛博朋克", "cyberpunk"),
    ("浮世绘", "ukiyo-e"), ("国画", "Chinese ink painting"), ("水墨", "ink wash painting"), ("印象派", "impressionism"),
    ("梵高", "Van Gogh"), ("电影感", "cinematic"), ("电影风", "cinematic"), ("胶片感", "film"), ("胶片", "film"),
    ("复古风", "vintage"), ("复古", "vintage"), ("日系小清新", "Japanese fresh style"), ("小清新", "fresh style"),
    ("日系", "Japanese style"), ("港风", "Hong Kong retro"),
    ("微笑", "smile"), ("笑容", "smile"), ("灿烂", "bright"), ("美颜", "beautify"),
    ("皮肤", "skin"), ("肌肤", "skin"), ("光滑", "smooth"), ("美白", "whiten skin"), ("妆容", "makeup"),
    ("淡妆", "light makeup"), ("浓妆", "heavy makeup"), ("口红", "lipstick"), ("表情", "expression"),
    ("自信", "confident"), ("开心", "happy"), ("红", "red"), ("橙", "orange"), ("黄", "yellow"), ("绿", "green"),
    ("蓝", "blue"), ("紫", "purple"), ("粉", "pink"), ("白", "white"), ("黑", "black"), ("灰", "gray"),
    ("棕", "brown"), ("金", "gold"), ("银", "silver"), ("色", ""), ("的", " "), ("和", ", "), ("与", ", "),
    ("一顶", ""), ("一件", ""), ("一条", ""), ("一双", ""), ("一个", ""), ("更加", "more "), ("更", "more "),
]
