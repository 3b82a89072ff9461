"""The words the template generator writes requests with, English and Chinese, kept as data.

Each table pairs what a person would type with what the command must say, so a request states
its program exactly: a part word names exactly the labels it targets, a colour word is the colour,
an intensity word ("a bit", "稍微", "very", "非常") scales the amount as the contract's planners
read it (0.3 by default, halved or doubled; blur 0.5). The words are chosen so that our own
rule planner (``core/planners/rule_planner.py``, vocabulary in ``core/planners/lexicon.py``)
reads them back: a phrase that it misreads is a phrase a fine-tuned model would learn wrongly
too, and the round-trip test in ``tests/test_dataset_templates.py`` measures the share.

Chinese requests carry English prompts in their commands, as the thesis' seed dataset does.
"""

from __future__ import annotations

#: A group of labels one part phrase names, with ways to say it (English, Chinese).
PartWords = tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]

PART_WORDS: tuple[PartWords, ...] = (
    (("Hat",), ("the hat", "her hat", "the cap"), ("帽子", "她的帽子")),
    (("Sunglasses",), ("the sunglasses", "her sunglasses", "the glasses"), ("墨镜", "太阳镜", "眼镜")),
    (("Hair",), ("the hair", "her hair"), ("头发", "她的头发")),
    (("Upper-clothes",), ("the shirt", "her top", "the jacket", "the clothes"), ("上衣", "衣服", "外套")),
    (("Skirt",), ("the skirt", "her skirt"), ("裙子", "短裙")),
    (("Dress",), ("the dress", "her dress"), ("连衣裙",)),
    (("Pants",), ("the pants", "the trousers", "her jeans"), ("裤子", "长裤")),
    (("Belt",), ("the belt",), ("腰带", "皮带")),
    (("Scarf",), ("the scarf", "her scarf"), ("围巾",)),
    (("Bag",), ("the bag", "her handbag", "the purse"), ("包", "包包", "手提包")),
    (("Left-shoe", "Right-shoe"), ("the shoes", "both shoes", "her shoes"), ("鞋子", "两只鞋")),
    (("Left-shoe",), ("the left shoe",), ("左脚的鞋", "左鞋")),
    (("Right-shoe",), ("the right shoe",), ("右脚的鞋", "右鞋")),
    (("Background",), ("the background", "the backdrop"), ("背景",)),
    (("Face",), ("the face", "her face"), ("脸", "面部")),
    (("Lips",), ("the lips", "her lips"), ("嘴唇",)),
    (("Eyes",), ("the eyes", "her eyes"), ("眼睛",)),
    (("Eyebrows",), ("the eyebrows",), ("眉毛",)),
)

#: Intensity words: level → words. ``cmp`` sits before a comparative ("a bit brighter"), ``adv`` before
#: a verb ("slightly blur"), ``zadv`` before a Chinese verb ("稍微调亮"), ``zsuf`` after it ("调亮一点").
INTENSITY: dict[str, dict[str, tuple[str, ...]]] = {
    "normal": {"cmp": ("",), "adv": ("",), "zadv": ("",), "zsuf": ("",)},
    "low": {"cmp": ("a bit ", "a little ", "slightly "), "adv": ("slightly ", "gently ", "a little "),
            "zadv": ("稍微", "略微", "轻微"), "zsuf": ("一点", "一些")},
    "high": {"cmp": ("much ", "a lot ", "way "), "adv": ("strongly ", "heavily ", "really "),
             "zadv": ("大幅", "明显", "非常"), "zsuf": ("很多",)},
}
#: How an intensity scales the default amount (0.3) and blur strength (0.5), as the rule planner reads it.
INTENSITY_SCALE = {"normal": 1.0, "low": 0.5, "high": 2.0}
DEFAULT_AMOUNT = 0.3
DEFAULT_BLUR = 0.5

#: Whole-image words for a tonal change with targets [].
WHOLE_IMAGE_EN = ("the photo", "the image", "the picture", "the whole picture")
WHOLE_IMAGE_ZH = ("照片", "图片", "整张图片", "画面")

# --- per command phrasing: format strings; {t} target phrase, {p} prompt, {c} colour, intensity keys above ---

REMOVE_EN = ("remove {t}", "erase {t}", "get rid of {t}", "delete {t}", "take out {t}")
REMOVE_ZH = ("去掉{t}", "把{t}删除", "移除{t}", "擦掉{t}", "不要{t}")
#: Taking off only suits what a person wears.
REMOVE_WORN_EN = ("take off {t}",)

RECOLOR_EN = ("make {t} {c}", "change {t} to {c}", "turn {t} {c}", "paint {t} {c}", "recolor {t} {c}",
              "change the color of {t} to {c}")
RECOLOR_ZH = ("把{t}换成{c}", "将{t}改为{c}", "把{t}的颜色改成{c}", "把{t}染成{c}", "{t}换成{c}")

CHANGE_EN = ("change {t} to {p}", "replace {t} with {p}", "turn {t} into {p}", "swap {t} for {p}")
CHANGE_ZH = ("把{t}换成{p}", "将{t}更换为{p}", "把{t}改成{p}", "{t}换成{p}")
#: Only for a new background that is a place.
PLACE_EN = ("put her on {p}", "place her in {p}")
PLACE_ZH = ("把她放到{p}", "把人物置于{p}")

BLUR_EN = ("{adv}blur {t}", "make {t} {cmp}blurrier", "{adv}defocus {t}")
BLUR_ZH = ("{zadv}虚化{t}", "把{t}模糊{zsuf}", "把{t}虚化{zsuf}")

#: {s} is the style with its article ("a watercolor painting"), {sa} without ("watercolor painting").
STYLE_EN = ("make the photo look like {s}", "turn the photo into {s}", "restyle the picture as {s}",
            "apply the {sa} style", "redo the picture in the style of {sa}")
STYLE_ZH = ("把照片变成{s}风格", "转换成{s}风格", "改成{s}画风", "整体改为{s}风格")

INSTRUCT_EN = ("add {p}", "please add {p}", "add {p} to the photo", "can you add {p}")
INSTRUCT_ZH = ("添加{p}", "在照片里加入{p}", "给画面增加{p}", "加上{p}")

#: Tonal changes: (property, direction) → (English forms, Chinese forms).
ADJUST: dict[tuple[str, int], tuple[tuple[str, ...], tuple[str, ...]]] = {
    ("brightness", 1): (("make {t} {cmp}brighter", "{adv}brighten {t}"),
                        ("把{t}{zadv}调亮", "{zadv}提亮{t}", "把{t}调亮{zsuf}")),
    ("brightness", -1): (("make {t} {cmp}darker", "{adv}darken {t}"),
                         ("把{t}{zadv}调暗", "把{t}调暗{zsuf}", "{zadv}压暗{t}")),
    ("contrast", 1): (("{adv}boost the contrast of {t}", "give {t} {cmp}more contrast"),
                      ("{zadv}提高{t}的对比度", "增加{t}的对比度{zsuf}")),
    ("contrast", -1): (("{adv}lower the contrast of {t}", "{adv}reduce the contrast of {t}"),
                       ("给{t}{zadv}降低对比度", "给{t}降低对比度{zsuf}")),
    ("saturation", 1): (("make {t} {cmp}more vivid", "{adv}saturate {t}"),
                        ("让{t}变得{zadv}鲜艳", "{zadv}提高{t}的饱和度")),
    ("saturation", -1): (("make {t} {cmp}less vivid", "{adv}desaturate {t}"),
                         ("给{t}{zadv}降低饱和度", "给{t}降低饱和度{zsuf}")),
    ("warmth", 1): (("make {t} {cmp}warmer", "{adv}warm up {t}"),
                    ("把{t}调暖{zsuf}", "让{t}的色调{zadv}偏暖")),
    ("warmth", -1): (("make {t} {cmp}cooler", "give {t} {cmp}cooler tones"),
                     ("把{t}调冷{zsuf}", "让{t}的色调{zadv}偏冷")),
    ("sharpness", 1): (("{adv}sharpen {t}", "make {t} {cmp}sharper"),
                       ("{zadv}锐化{t}", "让{t}变得{zadv}清晰")),
    ("sharpness", -1): (("{adv}soften {t}", "make {t} {cmp}softer"),
                        ("{zadv}柔化{t}", "让{t}变得{zadv}柔和")),
}
#: Black and white: saturation -1, whatever the intensity.
#: Only for the whole image: "make the hair black and white" reads as a new look, not a tonal change.
MONOCHROME_EN = ("make {t} black and white", "turn {t} black and white", "convert {t} to black and white")
MONOCHROME_ZH = ("把{t}变成黑白", "把{t}转成黑白")

#: Colours: (English as written, Chinese as written, the command's colour); "" where a language has no plain word
#: for it that a reader takes as only a colour ("sky blue" names the sky).
COLORS: tuple[tuple[str, str, str], ...] = (
    ("red", "红色", "red"), ("blue", "蓝色", "blue"), ("white", "白色", "white"), ("black", "黑色", "black"),
    ("green", "绿色", "green"), ("pink", "粉色", "pink"), ("purple", "紫色", "purple"),
    ("yellow", "黄色", "yellow"), ("orange", "橙色", "orange"), ("gray", "灰色", "gray"),
    ("brown", "棕色", "brown"), ("gold", "金色", "gold"), ("silver", "银色", "silver"), ("beige", "米色", "beige"),
    ("navy", "藏青色", "navy"), ("", "天蓝色", "skyblue"), ("dark red", "酒红色", "darkred"),
    ("dark green", "墨绿色", "darkgreen"), ("dark blue", "深蓝色", "darkblue"), ("light blue", "浅蓝色", "lightblue"),
    ("light pink", "浅粉色", "lightpink"), ("khaki", "卡其色", "khaki"), ("teal", "青色", "teal"),
    ("maroon", "", "maroon"), ("coral", "", "coral"), ("lavender", "", "lavender"), ("turquoise", "", "turquoise"),
)

#: Prompts for `change`, per label: (English as written and as the prompt, Chinese as written).
PROMPTS: dict[str, tuple[tuple[str, str], ...]] = {
    "Background": (("a beach at sunset", "夕阳下的海滩"), ("snowy mountains", "雪山"),
                   ("a city street at night", "夜晚的城市街道"), ("a cherry blossom garden", "樱花花园"),
                   ("a green meadow", "绿色的草地"), ("a cozy cafe", "温馨的咖啡馆"), ("a misty forest", "雾气弥漫的森林"),
                   ("a desert", "沙漠"), ("a starry night", "星空"), ("a library", "图书馆"),
                   ("a sea of flowers", "花海"), ("an office", "办公室")),
    "Upper-clothes": (("a leather jacket", "皮夹克"), ("a white linen shirt", "白色亚麻衬衫"),
                      ("a striped sweater", "条纹毛衣"), ("a denim jacket", "牛仔夹克"),
                      ("a floral blouse", "碎花衬衫"), ("a knitted cardigan", "针织开衫")),
    "Hair": (("long curly hair", "长卷发"), ("a short bob", "波波头短发"), ("braids", "麻花辫"),
             ("a messy bun", "丸子头")),
    "Pants": (("blue jeans", "蓝色牛仔裤"), ("white shorts", "白色短裤"), ("cargo pants", "工装裤"),
              ("black leather trousers", "黑色皮裤")),
    "Skirt": (("a pleated skirt", "百褶裙"), ("a denim skirt", "牛仔短裙"), ("a long floral skirt", "碎花长裙")),
    "Dress": (("an evening gown", "晚礼服"), ("a summer sundress", "夏日吊带裙"), ("a lace wedding dress", "蕾丝婚纱")),
    "Hat": (("a straw hat", "草帽"), ("a baseball cap", "棒球帽"), ("a beret", "贝雷帽")),
    "Bag": (("a leather handbag", "皮革手提包"), ("a small backpack", "小背包")),
    "Scarf": (("a knitted scarf", "针织围巾"), ("a silk scarf", "丝巾")),
    "Sunglasses": (("round glasses", "圆框眼镜"), ("aviator sunglasses", "飞行员墨镜")),
    "Left-shoe+Right-shoe": (("white sneakers", "白色运动鞋"), ("black boots", "黑色靴子"),
                             ("red high heels", "红色高跟鞋")),
}
#: Background prompts that are places one can be put in ("put her on a beach at sunset").
PLACES = frozenset({"a beach at sunset", "a city street at night", "a cherry blossom garden", "a green meadow",
                    "a cozy cafe", "a misty forest", "a desert", "a library", "an office"})

#: Face retouches: (English request phrase, Chinese request phrase, the prompt).
FACE: tuple[tuple[str, str, str], ...] = (
    ("make her smile", "让她微笑", "smile"),
    ("give her a bigger smile", "让她的笑容更灿烂", "bigger smile"),
    ("add light makeup", "给她化淡妆", "light makeup"),
    ("smooth the skin", "让皮肤更光滑", "smooth skin"),
    ("make her look happier", "让她的表情更开心", "happier expression"),
    ("add red lipstick", "涂上红色口红", "red lipstick"),
    ("make her skin look fresh and even", "让肌肤看起来清透均匀", "fresh, even skin"),
    ("give her a confident expression", "让她的表情更自信", "confident expression"),
)

#: Global edits (`instruct`): (English, Chinese, the instruction).
INSTRUCT: tuple[tuple[str, str, str], ...] = (
    ("falling snow", "飘落的雪花", "add falling snow"),
    ("a light fog", "薄雾效果", "add light fog"),
    ("rain", "下雨的效果", "add rain"),
    ("fireworks", "烟花", "add fireworks"),
    ("a lens flare", "镜头光晕", "add a lens flare"),
    ("floating soap bubbles", "漂浮的泡泡", "add floating soap bubbles"),
    ("falling autumn leaves", "飘落的秋叶", "add falling autumn leaves"),
    ("drifting petals", "飘落的花瓣", "add drifting petals"),
)

#: Styles: (English as written, Chinese as written, the style).
STYLES: tuple[tuple[str, str, str], ...] = (
    ("a watercolor painting", "水彩", "watercolor painting"), ("an oil painting", "油画", "oil painting"),
    ("anime", "动漫", "anime"), ("a cartoon", "卡通", "cartoon"), ("a pencil sketch", "素描", "pencil sketch"),
    ("pixel art", "像素", "pixel art"), ("cyberpunk", "赛博朋克", "cyberpunk"), ("ukiyo-e", "浮世绘", "ukiyo-e"),
    ("an ink wash painting", "水墨", "ink wash painting"), ("Van Gogh", "梵高", "Van Gogh"),
)

#: Requests for suggestions (`advice`): the person asks, the expected reply is a suggestion about that topic.
ADVICE: tuple[tuple[str, str, str], ...] = (
    ("any tips for the lighting?", "光线方面有什么建议吗？",
     "Try a slightly warmer tone and a little more brightness."),
    ("how could this photo look better?", "这张照片怎样能更好看？",
     "Blur the background a little so the person stands out."),
    ("what colour would suit the outfit?", "衣服换什么颜色更合适？",
     "A navy or beige top would match the background well."),
    ("any suggestions for the background?", "背景有什么改进建议？",
     "A simpler background, such as a plain wall or soft bokeh, would keep the focus on the person."),
)

#: Joining clauses of one request.
JOIN_EN = (", then ", " and ", ", and then ", ". Then ", "; ")
JOIN_ZH = ("，然后", "，", "，再", "；", "，并且", "，同时")
PREFIX_EN = ("", "", "", "please ", "could you ", "can you ")
PREFIX_ZH = ("", "", "请", "帮我", "麻烦")
SUFFIX_EN = ("", "", ".", "!")
SUFFIX_ZH = ("", "。", "！")
