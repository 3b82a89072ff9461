"""The Manual page: how to use each page, in English and Chinese, and every command from the rules file."""

from __future__ import annotations

import streamlit as st

from core.rules import load_rules

GUIDE_EN = """
**Editor.** Upload a photo (or pick a sample) in the sidebar: a new edit history starts. Say what to change in
the chat — “make it brighter”, “more contrast and a bit warmer”, “make the selection blue”. The assistant answers
and its commands appear on the **Operation Board**: tick the ones you want, adjust their values inline (a command
that cannot run says why in red), then **Run selected** or **Run all**. A progress bar follows the job; **Cancel**
stops it. The result appears beside the base: **Set as base** continues from it, **Undo** goes back a step, and
**Download PNG** saves any step with its recipe (commands and parameters) inside the file.

**Start from a prompt** (sidebar, when CHATEDIT_BASE_MODEL is set): describe a picture and **Generate**; the image
becomes the first step of a new history. **Swap face** (below the images, when CHATEDIT_FACE_ANALYSIS_DIR and
CHATEDIT_FACE_SWAP_MODEL are set): upload a face photo and its largest face replaces the base's largest face; the
result appears beside the base like an edit. Photos may be PNG, JPEG, WebP, BMP or TIFF.

**Selection tools.** Without a segmenter, choose what to edit yourself: paint with the **Brush** (size slider;
*Erase* mode removes), or **Click to select** a region of similar colour (tolerance slider). **Invert** and
**Clear** work on the whole selection. Commands then target **Selection**.

**Gallery.** Every history of the team as a card (latest image, owner, date, steps, last status), with filters.
Open one to see its tree of steps with before/after, commands and parameters; **Continue editing** opens it in the
editor; **Re-run** queues a step's recipe again.

**Sign-in and sharing.** When sign-in is on, the sidebar shows who you are, **Sign out** and **Change password**.
A new history is private (you and the admins); **Shared with the team** lets everyone who may read the team's
histories see it, read-only. An open history refreshes when someone else changes it, and a **Set as base** made
on an older view is refused with who changed it and when.

**Review** (reviewers and admins). The steps awaiting review: before and after, the request, the commands in words.
**Approve** (`a`), **Reject** (`x`), **Request changes**, each with an optional comment; click the picture to pin a
comment to a point (a numbered marker); **Next** (`j`). A new step made after “changes requested” reopens the
review. Approved steps become training examples.

**Datasets, Evaluation, Accounts** (admins). Import, generate, harvest, merge, split, browse and export fine-tuning
data; score planners on a dataset's test split and compare runs; manage accounts and read the audit log.

**Settings.** Your defaults for strength, steps, guidance, seed, scheduler, ControlNet, mask blur, LoRAs, the
planner and its model (openai planner), the editor backend (**auto** uses a generative model where one is
configured; **classical** never does) and mask optimisation (snap a generative edit's region to the parts' edges).
Precedence: a command's own value > your settings > the command's template > built-in defaults.

**Status.** Whether the database answers, which workers are alive, the queue per lane, which backends are
configured (and how to enable the others), and recent errors. It refreshes itself.
"""

GUIDE_ZH = """
**编辑器。** 在侧边栏上传照片（或选择示例图片），即开始一个新的编辑历史。在对话框里说出想要的修改——“把图片调亮一点”、
“增加对比度，颜色暖一些”、“把选区变成蓝色”。助手回复后，命令会出现在**操作面板**上：勾选需要的命令，可直接修改参数
（无法执行的命令会用红字说明原因），然后点击**运行所选**或**全部运行**。进度条显示任务进度，**取消**可停止任务。结果显示在
底图旁边：**设为底图**从结果继续编辑，**撤销**回到上一步，**下载 PNG** 保存任意一步，文件内含配方（命令与参数）。

**从文字开始**（侧边栏，需设置 CHATEDIT_BASE_MODEL）：描述一幅画面并点击 **Generate**，生成的图片成为新编辑历史的第一步。
**换脸**（图片下方，需设置 CHATEDIT_FACE_ANALYSIS_DIR 与 CHATEDIT_FACE_SWAP_MODEL）：上传一张人脸照片，其中最大的人脸会替换
底图中最大的人脸，结果像编辑结果一样显示在底图旁边。照片可以是 PNG、JPEG、WebP、BMP 或 TIFF。

**选区工具。** 未配置分割模型时，由你自己选择要编辑的区域：用**画笔**涂抹（可调大小；*擦除*模式去除选区），或**点击选择**
颜色相近的区域（可调容差）。**反选**、**清除**作用于整个选区。命令的目标写作 **Selection**。

**画廊。** 团队的每个编辑历史都是一张卡片（最新图片、作者、日期、步数、最近状态），可筛选。打开后可查看步骤树、前后对比、
命令与参数；**继续编辑**在编辑器中打开；**重新运行**再次执行某一步的配方。

**登录与共享。** 开启登录后，侧边栏显示当前用户、**退出登录**与**修改密码**。新的编辑历史默认私有（仅你和管理员可见）；
打开**与团队共享**后，所有可阅读团队历史的人都能以只读方式查看。别人修改了你打开的历史时页面会自动刷新；基于旧页面做出的
**设为底图**会被拒绝，并说明是谁在何时做了修改。

**审阅**（审阅者与管理员）。待审阅的步骤：前后对比、请求原文与命令说明。**通过**（`a`）、**拒绝**（`x`）、**要求修改**，
均可附评论；点击图片可把评论钉在某一点（显示编号标记）；**下一个**（`j`）。“要求修改”之后做出的新步骤会重新开启审阅。
通过的步骤会成为训练样本。

**数据集、评估、账户**（管理员）。导入、生成、收集、合并、划分、浏览与导出微调数据；在数据集的测试集上评估规划器并对比多次
运行；管理账户并查看审计日志。

**设置。** 你的默认参数：强度、步数、引导系数、随机种子、采样器、ControlNet、蒙版模糊、LoRA、规划器及其模型（openai
规划器）、编辑后端（**auto** 在已配置生成模型时使用它；**classical** 从不使用）与蒙版优化（让生成式编辑的区域贴合各部位的
边缘）。优先级：命令自带的值 > 你的设置 > 命令模板 > 内置默认值。

**状态。** 数据库是否可用、哪些 worker 在线、各通道的队列、已配置的后端（以及如何启用其他后端）和最近的错误，自动刷新。
"""


def render() -> None:
    st.title("Manual · 使用说明")
    english, chinese = st.tabs(["English", "中文"])
    with english:
        st.markdown(GUIDE_EN)
    with chinese:
        st.markdown(GUIDE_ZH)
    st.header("Commands · 命令")
    rules = load_rules()
    st.write("The planner writes these commands; you can also read and adjust them on the Operation Board. "
             "Targets are part names (or **Selection**); `[]` means the whole image.")
    rows = []
    for rule in rules.commands.values():
        needs = ("generative model" if rule.generative and not rule.classical_fallback
                 else "advice only" if not rule.executable else "runs offline")
        rows.append({"command": rule.name, "parameters": ", ".join(p.describe() for p in rule.paras),
                     "what it does": rule.description, "说明": rule.description_zh, "needs": needs})
    st.table(rows)
