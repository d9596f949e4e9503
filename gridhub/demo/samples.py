"""Realistic 12345 work orders for the simulator, from situations in county life and the source articles."""

from __future__ import annotations

SAMPLE_ORDERS: tuple[dict[str, str], ...] = (
    {
        "appeal_type": "投诉",
        "content": "我们小区下水道反流，污水漫到一楼楼道，味道很大，请尽快处理。",
        "address": "城关镇东街社区幸福小区3号楼",
        "district": "城关镇",
        "grid_code": "PA-CG-01-001",
    },
    {
        "appeal_type": "投诉",
        "content": "物业今年把垃圾费从每月8元涨到15元，没有公示也没有开业主大会，居民意见很大。",
        "address": "城关镇西关社区锦绣花园",
        "district": "城关镇",
        "grid_code": "PA-CG-02-001",
    },
    {
        "appeal_type": "举报",
        "content": "村东头的小作坊晚上偷排污水，河沟里有异味，鱼都死了。",
        "address": "河西乡柳村东头",
        "district": "河西乡",
        "grid_code": "PA-HX-01-001",
    },
    {
        "appeal_type": "求助",
        "content": "在县城工地干了半年，包工头拖欠工资三万多元，一直不给，快过年了要讨薪。",
        "address": "城关镇东街在建商住楼工地",
        "district": "城关镇",
    },
    {
        "appeal_type": "求助",
        "content": "邻居盖房占了我家宅基地半米，两家吵架好几次，村里调解没有结果。",
        "address": "河西乡王庄村",
        "district": "河西乡",
        "grid_code": "PA-HX-02-001",
    },
    {
        "appeal_type": "求助",
        "content": "楼下饭店燃气泄漏，闻到很浓的煤气味，人已经疏散，请马上派人。",
        "address": "城关镇东街83号",
        "district": "城关镇",
        "grid_code": "PA-CG-01-002",
        "urgency": "紧急",
    },
    {
        "appeal_type": "投诉",
        "content": "小区停水两天了，没有任何通知，老人孩子用水困难。",
        "address": "城关镇西关社区老棉纺厂家属院",
        "district": "城关镇",
    },
    {
        "appeal_type": "建议",
        "content": "建议在柳村路口增设路灯，晚上太黑，老人出行不便。",
        "address": "河西乡柳村路口",
        "district": "河西乡",
    },
)

CALLER_NAMES = ("张先生", "李女士", "王大爷", "赵女士", "刘先生", "陈阿姨")
